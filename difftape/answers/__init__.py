"""The answers: eval, grad, jacobian, hessian, check and batches of them, computed from a program."""
