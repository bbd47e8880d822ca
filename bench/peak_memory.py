"""Peak resident memory of a benchmark process, for the benchmarks' child processes.

VmHWM counts this process's own pages only; ``ru_maxrss`` (getrusage, wait4) also
counts the parent's memory, shared between fork and exec.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def peak_rss_mb():
    """This process's peak resident memory in MB."""
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak():
    """Start this process's peak resident memory afresh (from its current size)."""
    with open("/proc/self/clear_refs", "w") as stream:
        stream.write("5")


#: Lines for a child's ``python -c`` script: prints ``PEAK <MB>`` at its end.
PRINT_PEAK = (f"import sys; sys.path.insert(0, {HERE!r}); "
              "from peak_memory import peak_rss_mb; print('PEAK', peak_rss_mb())")


def printed_peak_mb(output):
    """The ``PEAK <MB>`` a child printed with :data:`PRINT_PEAK`."""
    return float(output.split("PEAK")[1].split()[0])
