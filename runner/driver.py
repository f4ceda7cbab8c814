"""kfbridge notebook driver.

kfbridge-step embeds this file and runs it with a Python interpreter that can import nbclient (the
Debian packages python3-nbclient and python3-ipykernel are enough; nothing is pip-installed). It
executes one notebook with nbclient and reports every kernel output line as soon as it arrives.

Usage: driver.py --notebook IN --output OUT [--parameters JSON] [--channel-fd N]

With --channel-fd, everything the runner shows goes to that descriptor as one JSON object per line
(a "frame"), so stream names, cell markers and the failure summary keep their order and user code
cannot forge them (the kernel does not inherit the descriptor):
  {"k": "stdout"|"stderr"|"system", "t": TEXT, "p": true if the line was cut}
  {"k": "fail", "cell": N, "ename": E, "evalue": V}     N = 0 when no cell was running
Without it (standalone use, benchmarks) stdout text goes to stdout and the rest to stderr.

The executed notebook is always written to OUT, also when a cell fails. Exit codes: 0 success,
1 failure, 2 usage, 3 nbclient/nbformat missing, 128+signal when terminated.
"""

import argparse
import json
import keyword
import math
import os
import re
import signal
import sys
import time
import warnings

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MISSING = 3

# A stream line longer than this is passed on in pieces, like the runner does with its own pipes.
MAX_LINE = 64 * 1024

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class Channel:
    """Line-assembles kernel output per stream and writes whole lines out at once."""

    def __init__(self, fd):
        self.fd = fd
        self.pending = {"stdout": "", "stderr": ""}

    def _frame(self, obj):
        data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def _line(self, kind, text, partial=False):
        if self.fd is not None:
            obj = {"k": kind, "t": text}
            if partial:
                obj["p"] = True
            self._frame(obj)
            return
        out = sys.stdout if kind == "stdout" else sys.stderr
        if kind == "system":
            text = "[kfbridge] " + text
        out.write(text + ("" if partial else "\n"))
        out.flush()

    def write(self, stream, text):
        """Passes on every complete line of text at once; a trailing partial line waits."""
        buf = self.pending[stream] + text
        lines = buf.split("\n")
        for line in lines[:-1]:
            self._line(stream, line[:-1] if line.endswith("\r") else line)
        rest = lines[-1]
        while len(rest) >= MAX_LINE:
            self._line(stream, rest[:MAX_LINE], partial=True)
            rest = rest[MAX_LINE:]
        self.pending[stream] = rest

    def flush(self):
        """Ends partial lines, so a cell's output never runs into the next cell's."""
        for stream, rest in self.pending.items():
            if rest:
                self._line(stream, rest)
            self.pending[stream] = ""

    def system(self, text):
        self.flush()
        self._line("system", text)

    def fail(self, cell, ename, evalue):
        self.flush()
        if self.fd is not None:
            self._frame({"k": "fail", "cell": cell, "ename": ename, "evalue": evalue})
        else:
            where = "cell %d: " % cell if cell else ""
            self._line("system", "%s%s: %s" % (where, ename, evalue))


def resolve_type(value):
    """Types a parameter value the way papermill's `-p` does, plus lower-case booleans (what a
    pipeline's Bool parameter looks like once it is a string)."""
    if value in ("True", "true"):
        return True
    if value in ("False", "false"):
        return False
    if value == "None":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        f = float(value)
    except ValueError:
        return value
    # nan and inf have no literal in the kernel languages; they stay strings.
    return f if math.isfinite(f) else value


def literal(value, language):
    """Returns value as a literal of the kernel language, or None if the language is unknown."""
    if language == "python":
        return repr(value)
    if language == "r":
        if value is None:
            return "NULL"
        if value is True:
            return "TRUE"
        if value is False:
            return "FALSE"
        if isinstance(value, (int, float)):
            return repr(value)  # R reads both as double, like `x = 5` in an R parameters cell
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return None


def inject_parameters(nb, params, language, nbformat, chan):
    """Adds a code cell tagged injected-parameters after the cell tagged parameters (papermill's
    convention; at the top when there is none), replacing one left by an earlier papermill run."""
    if not params:
        return
    lines = []
    for name, raw in params.items():
        if not name.isidentifier() or keyword.iskeyword(name):
            chan.system("parameter %r is not a valid variable name; it is only in the environment" % name)
            continue
        lit = literal(resolve_type(raw), language)
        if lit is None:
            chan.system("parameters are not injected into %s notebooks; they are in the environment" % language)
            return
        lines.append("%s = %s" % (name, lit))
    if not lines:
        return
    cell = nbformat.v4.new_code_cell(source="# Parameters\n" + "\n".join(lines) + "\n")
    cell.metadata["tags"] = ["injected-parameters"]
    cells = nb.cells
    for i, c in enumerate(cells):
        if "injected-parameters" in c.get("metadata", {}).get("tags", []):
            del cells[i]
            break
    at = 0
    for i, c in enumerate(cells):
        if "parameters" in c.get("metadata", {}).get("tags", []):
            at = i + 1
            break
    cells.insert(at, cell)
    where = "after the cell tagged parameters" if at else "at the top (no cell is tagged parameters)"
    chan.system("injected %d parameter(s) %s" % (len(lines), where))


def choose_kernel(nb, ksm):
    """Returns (name, spec): the notebook's kernelspec if installed, else the first installed
    kernel of the notebook's language."""
    specs = ksm.find_kernel_specs()
    meta = nb.metadata.get("kernelspec", {}) or {}
    name = meta.get("name") or ""
    language = (meta.get("language") or nb.metadata.get("language_info", {}).get("name") or "").lower()
    if name in specs:
        return name, ksm.get_kernel_spec(name)
    if not language and not name:
        language = "python"
    for candidate in sorted(specs):
        try:
            spec = ksm.get_kernel_spec(candidate)
        except Exception:  # a broken kernel.json must not hide the others
            continue
        if spec.language.lower() == language:
            return candidate, spec
    hint = {"python": "python3-ipykernel", "r": "r-cran-irkernel"}.get(language, "a Jupyter kernel for it")
    raise LookupError(
        "no Jupyter kernel for this notebook: it asks for kernel %r (language %r); installed kernels: %s; install %s"
        % (name, language or "unknown", ", ".join(sorted(specs)) or "none", hint)
    )


def main():
    ap = argparse.ArgumentParser(description="Execute a notebook with nbclient, streaming its output.")
    ap.add_argument("--notebook", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--parameters", default="{}", help="JSON object of name: string value")
    ap.add_argument("--channel-fd", type=int, default=None)
    args = ap.parse_args()
    chan = Channel(args.channel_fd)

    terminated = []

    def on_signal(signum, frame):
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # debugpy in ipykernel warns about frozen modules on every kernel start; the kernel inherits this.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    try:
        import nbformat
        from jupyter_client.kernelspec import KernelSpecManager
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, DeadKernelError
        from nbclient.util import ensure_async
    except ImportError as e:
        sys.stderr.write(
            "kfbridge notebook driver: %s; %s cannot execute notebooks (install python3-nbclient python3-ipykernel)\n"
            % (e, sys.executable)
        )
        return EXIT_MISSING

    try:
        # nbformat >= 5.1 warns on every read of a 4.5 notebook whose cells lack ids and adds them
        # itself; the warning means nothing to a pipeline's log.
        from nbformat.warnings import MissingIDFieldWarning

        warnings.simplefilter("ignore", MissingIDFieldWarning)
    except ImportError:
        pass

    try:
        params = json.loads(args.parameters)
    except ValueError as e:
        sys.stderr.write("kfbridge notebook driver: --parameters: %s\n" % e)
        return EXIT_USAGE
    nb = None

    state = {"cell": 0}
    ordinal = {}

    class StreamingClient(NotebookClient):
        """Passes every output message on as it arrives; the normal capture into the notebook
        continues unchanged."""

        def process_message(self, msg, cell, cell_index):
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                chan.write("stderr" if c.get("name") == "stderr" else "stdout", c.get("text", ""))
            elif t in ("execute_result", "display_data"):
                text = c.get("data", {}).get("text/plain")
                if text:
                    chan.write("stdout", text if text.endswith("\n") else text + "\n")
            elif t == "error":
                tb = "\n".join(c.get("traceback") or []) or "%s: %s" % (c.get("ename"), c.get("evalue"))
                chan.write("stderr", ANSI.sub("", tb) + "\n")
            return super().process_message(msg, cell, cell_index)

    def on_cell_execute(cell, cell_index, **kw):
        state["cell"] = ordinal.get(cell_index, 0)
        label = " (injected parameters)" if "injected-parameters" in cell.metadata.get("tags", []) else ""
        chan.system("cell %d/%d%s" % (state["cell"], len(ordinal), label))

    def on_cell_executed(cell, cell_index, execute_reply=None, **kw):
        chan.flush()

    failure = {}

    def on_cell_error(cell, cell_index, execute_reply=None, **kw):
        content = (execute_reply or {}).get("content", {})
        failure.setdefault("cell", ordinal.get(cell_index, 0))
        failure.setdefault("ename", content.get("ename", "Error"))
        failure.setdefault("evalue", content.get("evalue", ""))

    started = time.monotonic()
    code = 0
    client = None
    try:
        nb = nbformat.read(args.notebook, as_version=4)
        kernel, spec = choose_kernel(nb, KernelSpecManager())
        language = spec.language.lower()
        inject_parameters(nb, params, language, nbformat, chan)
        # Numbered like the execution counts a fresh kernel gives: only code cells that run.
        skip_tag = NotebookClient.skip_cells_with_tag.default_value
        n = 0
        for i, c in enumerate(nb.cells):
            if c.cell_type == "code" and c.source.strip() and skip_tag not in c.metadata.get("tags", []):
                n += 1
                ordinal[i] = n
        chan.system("starting kernel %s (%s) for %d code cell(s)" % (kernel, language, n))
        client = StreamingClient(
            nb,
            timeout=None,  # a pipeline step may run for hours; the runtime bounds the step
            startup_timeout=120,
            kernel_name=kernel,
            resources={"metadata": {"path": os.getcwd()}},
            on_cell_execute=on_cell_execute,
            on_cell_executed=on_cell_executed,
            on_cell_error=on_cell_error,
        )

        async def on_notebook_start(**kw):
            # nbclient's own handlers only shut the kernel down; these also remember the signal so
            # the driver exits as terminated rather than as a failed cell.
            import asyncio

            def stop(signum):
                terminated.append(signum)
                asyncio.ensure_future(ensure_async(client.km.shutdown_kernel(now=True)))

            loop = asyncio.get_running_loop()
            for s in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(s, stop, s)
            pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
            chan.system("kernel ready%s after %.1fs" % (" (pid %s)" % pid if pid else "", time.monotonic() - started))

        client.on_notebook_start = on_notebook_start
        if any("ipykernel" in a for a in spec.argv):
            # ipykernel 6 tees output written to the process's file descriptors (subprocesses, C
            # libraries) to both the notebook and its own stdout/stderr, which are the runner's:
            # every such line would be logged twice. Without the capture it is logged once, through
            # the runner's pipes; the executed notebook then lacks it, as with ipykernel 5.
            client.extra_arguments = list(client.extra_arguments) + ["--IPKernelApp.capture_fd_output=False"]
        client.execute()
    except CellExecutionError as e:
        chan.flush()
        if not failure:
            failure.update(cell=state["cell"], ename=getattr(e, "ename", "CellExecutionError"), evalue=getattr(e, "evalue", str(e)))
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 128 + (terminated[0] if terminated else signal.SIGINT)
    except DeadKernelError as e:
        if terminated:
            code = 128 + terminated[0]
        else:
            failure.update(cell=state["cell"], ename="DeadKernelError", evalue=str(e) or "the kernel died")
            code = EXIT_FAILED
    except Exception as e:  # kernel missing or failing to start, unreadable notebook, ...
        if terminated:
            code = 128 + terminated[0]
        else:
            failure.update(cell=state["cell"], ename=type(e).__name__, evalue=str(e))
            code = EXIT_FAILED
    finally:
        chan.flush()
        # Written in every case: the executed notebook is how a failure is debugged.
        if nb is not None:
            nbformat.write(nb, args.output)
    if terminated and code == 0:
        code = 128 + terminated[0]
    if code >= 128:
        chan.system("terminated by signal %d after %.1fs" % (code - 128, time.monotonic() - started))
    elif failure:
        chan.fail(failure.get("cell", 0), failure.get("ename", "Error"), failure.get("evalue", ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
