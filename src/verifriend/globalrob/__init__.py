"""Global robustness (GROCKET): difference networks, certified bounds of the largest output
change under any input perturbation of size delta, branch and bound over difference signs,
a joint PGD lower bound, an exact twin-network MILP for small networks, and the training
regularizer."""
