"""Foundations every layer may use: the error hierarchy (`errors`), safe file outputs that never replace
what optkit did not create (`safe_output`), and limits on work and memory (`resources`).

May import: nothing from optkit. Add here only what every layer needs and what knows nothing of graphs,
passes or TVM.
"""
