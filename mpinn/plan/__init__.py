"""The cost model behind ``mpinn plan``: pure functions, no MPI, except the measurements of
:mod:`~mpinn.plan.calibrate` (it times the communicator's collectives on this machine).

- :mod:`~mpinn.plan.profile`: the machine profile (JSON schema, loading, validation)
- :mod:`~mpinn.plan.costs`: alpha-beta formulas of collectives, pipeline bubble, overlap
- :mod:`~mpinn.plan.workload`: what a step of an MLP costs a rank (matmuls, passes, memory)
- :mod:`~mpinn.plan.layouts`, :mod:`~mpinn.plan.predict`: layouts and their predicted step
- :mod:`~mpinn.plan.planner`, :mod:`~mpinn.plan.report`: the search, tables, JSON and plot
"""
