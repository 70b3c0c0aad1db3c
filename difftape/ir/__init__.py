"""The program IR: one typed graph of nodes (op, inputs, params, shape, dtype, span, bound name)."""
