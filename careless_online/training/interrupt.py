"""Ctrl-C (SIGINT) and SIGTERM: stop within a step, leave no partial file, say how to resume.

Python's default SIGINT handler raises :class:`KeyboardInterrupt` wherever the
main thread is, TensorFlow's own code included, which may catch it, go on and
finish an evaluation or more first; SIGTERM's default action ends the process
at once, leaving the temporary files of a write in progress.  While a
:class:`SignalStop` is installed (the ``careless_online`` command installs one
around a merge):

* during training (inside :meth:`SignalStop.deferred`) a signal only sets
  :attr:`SignalStop.requested`; the training loop looks at it after every step
  and every evaluation batch and stops with :class:`Interrupted`, whose
  message names the checkpoint to resume from.  If the loop has not stopped
  :data:`GRACE_S` seconds later (a very long step), or on a second signal,
  :class:`Interrupted` is raised where the main thread is; if the main
  thread is held in TensorFlow's runtime (a graph being compiled), the
  process ends :data:`HARD_S` seconds after the signal with the same
  message (no output is being written then: writes run in Python);
* elsewhere (converting inputs, writing outputs) :class:`Interrupted` is
  raised at once, so every ``with``/``finally`` cleanup runs (temporary files
  and partial checkpoint units are removed).

The command then prints the message and ends the process without the slow
teardown of TensorFlow's runtime (seconds), with status 128 + the signal's
number (130 for SIGINT, 143 for SIGTERM).
"""

import _thread
import contextlib
import os
import signal
import sys
import threading

#: Signals handled.
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds the training loop has to stop on its own before it is interrupted where it is.
GRACE_S = 0.5
#: Seconds after which a process still held in TensorFlow's runtime ends at once.
HARD_S = 1.5


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (or by Ctrl-C).

    Parameters
    ----------
    signum : int
        The signal.
    message : str
        What to tell the user (the checkpoint to resume from).
    from_signal : bool
        Raised because of a real signal (the command may then end the
        process without TensorFlow's teardown).
    """

    def __init__(self, signum=signal.SIGINT, message="interrupted", from_signal=False):
        super().__init__(message)
        self.signum = int(signum)
        self.message = str(message)
        self.from_signal = bool(from_signal)

    @property
    def exit_status(self):
        """128 + the signal's number, as a shell reports a process ended by it."""
        return 128 + self.signum

    def __str__(self):
        return self.message

    def again(self, message):
        """The same interruption with another message."""
        return Interrupted(self.signum, message, self.from_signal)


class SignalStop:
    """Handlers of SIGINT and SIGTERM while installed (a context manager; main thread only).

    Attributes
    ----------
    requested : int or None
        The signal received during a deferred block, not acted on yet.
    """

    def __init__(self, grace_s=GRACE_S, hard_s=HARD_S):
        if not 0 < grace_s < hard_s:
            raise ValueError(f"need 0 < grace_s < hard_s (got {grace_s}, {hard_s})")
        self.grace_s, self.hard_s = float(grace_s), float(hard_s)
        self.requested = None
        self._deferring = 0
        self._message = self._cleanup = None
        self._saved = {}
        self._grace = self._deadline = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind, error, trace):
        if not (isinstance(error, Interrupted) and error.from_signal):
            self._cancel_timer()  # else the hard exit stays the deadline until the process ends
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved = {}
        return False

    def _handle(self, signum, frame):
        if self._deferring and self.requested is None:
            self.requested = signum
            self._grace = threading.Timer(self.grace_s, _thread.interrupt_main, args=(signum,))
            self._deadline = threading.Timer(self.hard_s, self._hard_exit, args=(signum,))
            for timer in (self._grace, self._deadline):
                timer.daemon = True
                timer.start()
            return
        self._cancel_timer(keep_deadline=True)
        raise Interrupted(signum, from_signal=True)

    def _hard_exit(self, signum):
        """End the process now (the main thread is held in TensorFlow's runtime), with the stop's message."""
        message = self._message() if self._message is not None else "interrupted"
        if self._cleanup is not None:
            self._cleanup()
        sys.stdout.flush()
        os.write(2, f"careless_online: {message}\n".encode())
        os._exit(128 + int(signum))

    def disarm(self):
        """Cancel a pending grace interruption and hard exit (a caller that handles the stop itself)."""
        self._cancel_timer()

    def _cancel_timer(self, keep_deadline=False):
        """Cancel the grace timer, and the hard exit unless ``keep_deadline``."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._deadline is not None and not keep_deadline:
            self._deadline.cancel()
            self._deadline = None

    @contextlib.contextmanager
    def deferred(self, message=None, cleanup=None):
        """A block (training) in which a signal is acted on at the next :meth:`check`.

        Parameters
        ----------
        message : callable, optional
            Gives the message of a hard exit (see the module docstring).
        cleanup : callable, optional
            Removes the block's temporary files before a hard exit.
        """
        self._deferring += 1
        self._message, self._cleanup = message, cleanup
        try:
            yield self
        finally:
            self._deferring -= 1  # the message and cleanup stay for a hard exit during the unwinding

    def check(self, message):
        """Raise :class:`Interrupted` with ``message`` if a signal was received.

        Parameters
        ----------
        message : callable
            Gives the message (called only when stopping).
        """
        if self.requested is not None:
            self._cancel_timer(keep_deadline=True)
            signum, self.requested = self.requested, None
            raise Interrupted(signum, message(), from_signal=True)
