"""Gradient-based optimisers with TensorFlow's (Keras's) names, defaults and update rules.

``SGD``, ``Adam`` and ``RMSprop`` update :class:`~difftape.engine.tensor.Variable` objects in
place through ``Variable.assign_sub``, as ``tf.keras.optimizers`` do::

    opt = difftape.optimizers.Adam(learning_rate=0.1)
    for _ in range(100):
        with difftape.Tape() as tape:
            loss = difftape.sum((w * x - y) ** 2)
        grads = tape.gradient(loss, [w])
        opt.apply_gradients(zip(grads, [w]))

or ``opt.minimize(lambda: loss_of(w), [w])`` for one step. Each optimiser keeps its slots
(momentum, moment estimates) per variable, created as zeros on a variable's first update, and
counts its steps in ``iterations``. The arithmetic is plain numpy on the variables' values, in
the variables' dtype: an optimiser step is not recorded by any tape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from difftape.errors import DifftapeError

__all__ = ["SGD", "Adam", "Optimizer", "RMSprop"]


def _hyper(name: str, value: Any, *, low: float = 0.0, high: float = math.inf, open_low: bool = False) -> float:
    """A hyperparameter as a float, refused with a clear message when it is out of its range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DifftapeError("value", f"{name} must be a number, not {value!r}") from None
    bad = not math.isfinite(v) or v < low or v > high or (open_low and v == low)
    if bad:
        lo = "(" if open_low else "["
        hi = "]" if math.isfinite(high) else ")"
        raise DifftapeError("value", f"{name} must be in {lo}{low:g}, {high:g}{hi}, not {value!r}")
    return v


class Optimizer:
    """What every optimiser shares: slots per variable, the step count, apply_gradients and minimize."""

    def __init__(self, learning_rate: float, name: str) -> None:
        self.learning_rate = _hyper("learning_rate", learning_rate, open_low=True)
        self.name = name
        self.iterations = 0
        # id(variable) -> (variable, {slot name: array}); the variable is kept so that its id stays its own
        self._slots: dict[int, tuple[Any, dict[str, np.ndarray]]] = {}

    # -- slots -----------------------------------------------------------------------------------
    def _slot_names(self) -> tuple[str, ...]:
        return ()

    def get_slot(self, var: Any, slot_name: str) -> np.ndarray:
        """The slot ``slot_name`` (e.g. ``"m"``) of ``var``, as tf.keras's ``get_slot``."""
        entry = self._slots.get(id(var))
        if entry is None or slot_name not in entry[1]:
            raise DifftapeError("name", f"{self.name} has no slot {slot_name!r} for this variable "
                                        f"(slots: {', '.join(self._slot_names()) or 'none'})")
        return entry[1][slot_name]

    def _slots_of(self, var: Any) -> dict[str, np.ndarray]:
        entry = self._slots.get(id(var))
        if entry is None:
            value = np.asarray(var._value)
            entry = (var, {n: np.zeros(value.shape, dtype=value.dtype) for n in self._slot_names()})
            self._slots[id(var)] = entry
        return entry[1]

    # -- the public API ------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Any]]) -> int:
        """Update each variable with its gradient (``zip(grads, variables)``); returns ``iterations``.

        Pairs whose gradient is None (unconnected) are skipped, as in TensorFlow; when every
        gradient is None nothing can be done, and that is an error.
        """
        from difftape.engine.tensor import Variable

        pairs = list(grads_and_vars)
        updates: list[tuple[Any, np.ndarray]] = []
        for i, pair in enumerate(pairs):
            try:
                grad, var = pair
            except (TypeError, ValueError):
                raise DifftapeError("usage", "apply_gradients takes (gradient, variable) pairs: "
                                             "apply_gradients(zip(grads, variables))") from None
            if not isinstance(var, Variable):
                raise DifftapeError("usage", f"pair {i}: {type(var).__name__} is not a difftape.Variable "
                                             "(an optimiser updates Variables in place)")
            if grad is None:
                continue
            value = np.asarray(var._value)
            if value.dtype.kind != "f":
                raise DifftapeError("value", f"pair {i}: the variable has dtype {value.dtype}; an optimiser "
                                             "updates float variables (create it from a float, e.g. 1.0)")
            g = np.asarray(grad._value if hasattr(grad, "_value") else grad)
            if g.shape != value.shape:
                raise DifftapeError("shape", f"pair {i}: gradient of shape {g.shape} for a variable of shape "
                                             f"{value.shape}")
            updates.append((var, g.astype(value.dtype, copy=False)))
        if not updates:
            raise DifftapeError("value", "no gradients provided for any variable (every gradient is None)")
        self.iterations += 1
        for var, g in updates:
            delta = self._delta(g, np.asarray(var._value), self._slots_of(var))
            var.assign_sub(delta)
        return self.iterations

    def minimize(self, loss: Callable[[], Any], var_list: Sequence[Any]) -> Any:
        """One step: the gradient of ``loss()`` w.r.t. ``var_list`` on a tape, then apply_gradients.

        ``loss`` is called with no arguments (as in TensorFlow 2). Returns the loss value computed
        before the update (TensorFlow returns nothing useful here; the value is).
        """
        from difftape.engine.tape import Tape

        if not callable(loss):
            raise DifftapeError("usage", "minimize needs the loss as a function of no arguments: "
                                         "opt.minimize(lambda: loss(w), [w])")
        var_list = list(var_list)
        with Tape() as tape:
            for var in var_list:
                tape.watch(var)
            value = loss()
        grads = tape.gradient(value, var_list)
        self.apply_gradients(zip(grads, var_list))
        return value

    def _delta(self, g: np.ndarray, w: np.ndarray, slots: dict[str, np.ndarray]) -> np.ndarray:
        """The amount to subtract from the variable (its slots are updated in place)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "learning_rate": self.learning_rate}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent, with (Nesterov) momentum when ``momentum > 0``.

    ``w -= lr * g``; with momentum, ``v = momentum * v - lr * g`` then ``w += v``, or with
    ``nesterov=True`` ``w += momentum * v - lr * g`` (TensorFlow's rules and defaults).
    """

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 name: str = "SGD") -> None:
        super().__init__(learning_rate, name)
        self.momentum = _hyper("momentum", momentum, high=1.0)
        self.nesterov = bool(nesterov)

    def _slot_names(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum > 0 else ()

    def _delta(self, g: np.ndarray, w: np.ndarray, slots: dict[str, np.ndarray]) -> np.ndarray:
        lr = self.learning_rate
        if self.momentum == 0:
            return lr * g
        v = slots["momentum"]
        v *= self.momentum
        v -= lr * g
        if self.nesterov:
            return lr * g - self.momentum * v
        return -v

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma and Ba), as TensorFlow writes it: epsilon is the paper's "epsilon hat".

    At step t: ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g**2``,
    ``w -= lr * sqrt(1-b2**t)/(1-b1**t) * m / (sqrt(v) + epsilon)``; with ``amsgrad`` the
    largest ``v`` so far is used in the denominator.
    """

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, name: str = "Adam") -> None:
        super().__init__(learning_rate, name)
        self.beta_1 = _hyper("beta_1", beta_1, high=1.0)
        self.beta_2 = _hyper("beta_2", beta_2, high=1.0)
        if self.beta_1 == 1.0 or self.beta_2 == 1.0:
            raise DifftapeError("value", "beta_1 and beta_2 must be below 1 (the bias correction divides by 1 - beta)")
        self.epsilon = _hyper("epsilon", epsilon)
        self.amsgrad = bool(amsgrad)

    def _slot_names(self) -> tuple[str, ...]:
        return ("m", "v", "vhat") if self.amsgrad else ("m", "v")

    def _delta(self, g: np.ndarray, w: np.ndarray, slots: dict[str, np.ndarray]) -> np.ndarray:
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        m, v = slots["m"], slots["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        if self.amsgrad:
            np.maximum(slots["vhat"], v, out=slots["vhat"])
            v = slots["vhat"]
        alpha = self.learning_rate * math.sqrt(1 - b2**t) / (1 - b1**t)
        return alpha * m / (np.sqrt(v) + self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square of recent gradients.

    ``ms = rho*ms + (1-rho)*g**2``; ``step = lr * g / sqrt(ms + epsilon)`` (``centered``:
    ``sqrt(ms - mg**2 + epsilon)`` with ``mg`` the running mean gradient); with momentum,
    ``mom = momentum*mom + step`` and ``w -= mom``, else ``w -= step`` (TensorFlow's rules).
    """

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, name: str = "RMSprop") -> None:
        super().__init__(learning_rate, name)
        self.rho = _hyper("rho", rho, high=1.0)
        self.momentum = _hyper("momentum", momentum, high=1.0)
        self.epsilon = _hyper("epsilon", epsilon)
        self.centered = bool(centered)

    def _slot_names(self) -> tuple[str, ...]:
        names = ["rms"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("mg")
        return tuple(names)

    def _delta(self, g: np.ndarray, w: np.ndarray, slots: dict[str, np.ndarray]) -> np.ndarray:
        rho = self.rho
        ms = slots["rms"]
        ms *= rho
        ms += (1 - rho) * (g * g)
        denom = ms
        if self.centered:
            mg = slots["mg"]
            mg *= rho
            mg += (1 - rho) * g
            denom = ms - mg * mg
        step = self.learning_rate * g / np.sqrt(denom + self.epsilon)
        if self.momentum > 0:
            mom = slots["momentum"]
            mom *= self.momentum
            mom += step
            return mom.copy()
        return step

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}
