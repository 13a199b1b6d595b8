"""infertune's three jobs on a Ray cluster, with the same contract as on one machine: batch inference on Ray
Data (`predict.py`), serving on Ray Serve (`serve.py`), and optimize trials as tasks that each hold a whole node
(`search.py`). Ray is an optional extra (`infertune[ray]`), imported only when one of these paths runs.
"""
