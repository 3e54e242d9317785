"""Each task's work on its hosts: read the facts, plan with :mod:`svrchain.ops`, apply through
:mod:`svrchain.remote`, report per host. ``tasks/`` declares the tasks; :mod:`svrchain.cli` runs them.
"""
