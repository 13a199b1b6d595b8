collect_ignore = ["on_ray"]  # run by test_on_ray.py inside a loopback-only network namespace, never directly
