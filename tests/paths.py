"""Where the tests find the repository and the lab's inventory (svrchain itself has no default inventory)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB_INVENTORY = REPO / "inventory" / "lab.yaml"
ORACLE_INVENTORY = REPO / "inventory" / "lab-oracle.yaml"  # the lab with its Oracle-shaped DB host
