"""The agent: perception, model building, exploration, planning, policies and the solve loop.

Nothing here yet: it is built in the model-building and solve-loop issues. It may import
`puzzlebot.sim` (never its ground truth, except in ablations labelled "privileged").
"""
