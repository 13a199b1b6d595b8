"""The accuracy-budget search: recipes (pass lists + a backend), candidates, selection, the Pareto front."""
