"""The shared benchmark harness: interleaved timing windows, ratios, peak memory, results files.

Every figure a benchmark reports is a ratio against a baseline measured in the same process, so
the harness times the contenders of one comparison in interleaved windows (A B, B A, A B, ...: the
order rotates every round, so machine noise and order effects hit all of them) and reports the
median rate and the median of the per-round ratios. Peak memory is the resident-set high-water
mark of a fresh subprocess per contender, since TensorFlow and PyTorch never hand memory back.

This module imports only the standard library, so any benchmark (and `bench/gpu_check.py` on a
machine without TensorFlow) can use it. A benchmark module is a `main(argv)` that
builds `Workload`s, times them with `time_interleaved`, and writes its dict with `write_results`.
"""

import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
RESULT_MARKER = "BENCH_RESULT "
PACKAGES = ("tensorflow", "keras", "torch", "numpy", "keras-resnets")
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
              "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


@dataclasses.dataclass
class Workload:
    """One timed thing: `step()` runs one synchronous step over `items_per_step` images."""

    name: str
    step: Callable[[], object]
    items_per_step: int


# ----------------------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far apart the windows were, as a fraction of the median."""
    return (max(values) - min(values)) / median(values)


def paired_ratios(candidate: Sequence[float], baseline: Sequence[float]) -> List[float]:
    """Per-round ratios of two interleaved series (round i of one against round i of the other)."""
    if len(candidate) != len(baseline):
        raise ValueError(f"series differ in length: {len(candidate)} vs {len(baseline)}")
    return [c / b for c, b in zip(candidate, baseline)]


def _select(values: Sequence[float], mask: Optional[Sequence[bool]]) -> List[float]:
    """The values where `mask` is true; all of them when there is no mask or it selects none."""
    if mask is None or not any(mask):
        return list(values)
    return [value for value, keep in zip(values, mask) if keep]


def ratio_summary(candidate: Sequence[float], baseline: Sequence[float],
                  clean: Optional[Sequence[bool]] = None) -> Dict[str, object]:
    """Median of the per-round ratios, with their lowest and highest value.

    With `clean` (one flag per round), only the clean rounds count, unless there are none;
    `rounds` says how many rounds the figure rests on and `clean` whether they were clean.
    """
    ratios = _select(paired_ratios(candidate, baseline), clean)
    return {"ratio": median(ratios), "ratio_low": min(ratios), "ratio_high": max(ratios),
            "rounds": len(ratios), "clean": clean is None or any(clean)}


def summarize(rates: Sequence[float], cores_busy: Sequence[float] = (),
              other_cores: Sequence[float] = (),
              clean: Optional[Sequence[bool]] = None) -> Dict[str, object]:
    """Median rate (over the clean windows when some are), relative spread, the window rates,
    the median cores this process kept busy and the median cores other processes used."""
    selected = _select(rates, clean)
    return {
        "images_per_s": median(selected),
        "spread": relative_spread(selected),
        "windows": [float(r) for r in rates],
        "clean_windows": len(rates) if clean is None else sum(bool(c) for c in clean),
        "cores_busy": median(cores_busy) if cores_busy else None,
        "other_cores": median(other_cores) if other_cores else None,
    }


# --------------------------------------------------------------------------------------- timing


def calibrate(step: Callable[[], object], min_window_s: float, clock=time.perf_counter) -> int:
    """Steps per window: enough for `min_window_s` seconds at the speed of one timed step."""
    start = clock()
    step()
    elapsed = max(clock() - start, 1e-9)
    return max(1, math.ceil(min_window_s / elapsed))


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used, over all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def system_busy_seconds() -> Optional[float]:
    """CPU time every process on the machine has used since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores this process and all other processes kept busy between `start()` and `stop()`."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock

    def start(self):
        self._wall, self._own, self._system = self.clock(), cpu_seconds(), system_busy_seconds()

    def stop(self) -> Tuple[float, float, Optional[float]]:
        """Returns (wall seconds, own cores busy, other processes' cores busy or None)."""
        wall = max(self.clock() - self._wall, 1e-9)
        own = cpu_seconds() - self._own
        system = system_busy_seconds()
        others = None
        if system is not None and self._system is not None:
            others = max(0.0, (system - self._system - own) / wall)
        return wall, own / wall, others


@dataclasses.dataclass
class Quiet:
    """When a window counts as clean, and how long to wait for a quiet machine before one.

    Other processes on a small shared machine take cores from the benchmark, and frameworks
    suffer unequally (PyTorch's OpenMP threads spin at barriers while a partner thread waits
    for a core): a window during which other processes kept more than `max_other_cores` busy
    is contended. Before each window the harness waits up to `timeout_s` for `probe_s` seconds
    in which the others stay below that bound, and re-times a contended window up to `retries`
    times (while the waits find quiet seconds; on a machine that stays busy it moves on),
    keeping the attempt during which the others used the fewest cores.
    """

    max_other_cores: float = 0.25
    timeout_s: float = 0.0
    probe_s: float = 1.0
    retries: int = 0  # re-time a contended window up to this many times (keeping the cleanest)

    def wait(self) -> Tuple[float, bool]:
        """Wait for a quiet probe (at most `timeout_s`); returns the seconds waited and whether
        a quiet probe was seen (always True with `timeout_s` 0: nothing was waited for)."""
        start = time.perf_counter()
        meter = CpuMeter()
        while time.perf_counter() - start < self.timeout_s:
            meter.start()
            time.sleep(self.probe_s)
            _, _, others = meter.stop()
            if others is None or others <= self.max_other_cores:
                return time.perf_counter() - start, True
        return time.perf_counter() - start, self.timeout_s <= 0

    def is_clean(self, other_cores: Optional[float]) -> bool:
        return other_cores is None or other_cores <= self.max_other_cores


def time_window(workload: Workload, steps: int, clock=time.perf_counter) -> Dict[str, float]:
    """Images per second over `steps` consecutive steps; the cores this process kept busy
    (CPU time / wall time) and the cores other processes took meanwhile."""
    meter = CpuMeter(clock)
    meter.start()
    for _ in range(steps):
        workload.step()
    wall, own, others = meter.stop()
    return {"rate": workload.items_per_step * steps / wall, "cores_busy": own,
            "other_cores": others}


SERIES = ("rates", "cores_busy", "other_cores", "waited_s")


def time_interleaved(
    workloads: Sequence[Workload],
    *,
    warmup_steps: int = 2,
    windows: int = 5,
    min_window_s: float = 5.0,
    quiet: Optional[Quiet] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, Dict[str, list]]:
    """Warm up every workload, then time `windows` rounds of one window each, interleaved.

    Round r runs the workloads in their order rotated by r (A B C, B C A, C A B, ...). Each
    workload's steps per window are calibrated once after its warm-up. With `quiet`, each
    window waits for a quiet machine first (see `Quiet`).

    Returns:
        name -> {"rates": images/s, "cores_busy", "other_cores", "waited_s"}, lists with one
        entry per round (index i of every list is the same round).
    """
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise ValueError(f"workload names must be unique; got {names}")
    steps = {}
    for workload in workloads:
        for _ in range(warmup_steps):
            workload.step()
        steps[workload.name] = calibrate(workload.step, min_window_s)
        if log:
            log(f"  warmed up {workload.name}: {steps[workload.name]} step(s) per window")
    series = {name: {key: [] for key in SERIES} for name in names}
    for round_index in range(windows):
        shift = round_index % len(workloads)
        for workload in list(workloads[shift:]) + list(workloads[:shift]):
            waited, window = 0.0, None
            for _ in range(1 + (quiet.retries if quiet else 0)):
                seconds, found_quiet = quiet.wait() if quiet else (0.0, True)
                waited += seconds
                attempt = time_window(workload, steps[workload.name])
                if window is None or (attempt["other_cores"] or 0.0) < (
                        window["other_cores"] or 0.0):
                    window = attempt
                # Retry only while the contention looks transient: not after a wait that
                # timed out on a busy machine.
                if quiet is None or quiet.is_clean(window["other_cores"]) or not found_quiet:
                    break
            entry = series[workload.name]
            entry["rates"].append(window["rate"])
            entry["cores_busy"].append(window["cores_busy"])
            entry["other_cores"].append(window["other_cores"])
            entry["waited_s"].append(waited)
        if log:
            log(f"  round {round_index + 1}/{windows}: " + ", ".join(
                f"{n} {series[n]['rates'][-1]:.1f}/s (others {_cores(series[n])})"
                for n in names))
    return series


def _cores(entry):
    value = entry["other_cores"][-1]
    return "?" if value is None else f"{value:.2f}"


def clean_rounds(series: Mapping[str, Mapping[str, list]], names: Sequence[str],
                 quiet: Quiet) -> List[bool]:
    """Per round: whether every window of `names` in it was clean."""
    rounds = len(series[names[0]]["rates"])
    return [all(quiet.is_clean(series[n]["other_cores"][i]) for n in names)
            for i in range(rounds)]


# --------------------------------------------------------------------------------------- memory


def peak_rss_mib() -> float:
    """This process's resident-set high-water mark in MiB.

    On Linux this is `VmHWM` from /proc/self/status: `getrusage`'s `ru_maxrss` survives
    fork + exec, so a fresh child would report its parent's peak when the parent was larger.
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def run_isolated(target: str, kwargs: Mapping[str, object], timeout: float = 1800,
                 env: Optional[Mapping[str, str]] = None) -> dict:
    """Call `module:function(**kwargs)` in a fresh Python process and return its dict result.

    The child adds `peak_rss_mib`, its resident-set high-water mark at the end of the call. The
    result crosses the process boundary as JSON, so kwargs and the result must be JSON-able.
    `env` adds environment variables to the child's (e.g. `KERAS_BACKEND`). Past `timeout`
    seconds the child is killed and `subprocess.TimeoutExpired` raised.
    """
    command = [sys.executable, "-m", "bench.harness", target, json.dumps(dict(kwargs))]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
           **(env or {})}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=root)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise RuntimeError(
        f"isolated run of {target}({kwargs}) failed with exit code {done.returncode}:\n"
        + (done.stderr or done.stdout)[-3000:]
    )


def _child_main(argv: Sequence[str]) -> None:
    target, kwargs = argv[0], json.loads(argv[1])
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = dict(function(**kwargs))
    result["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def load_average() -> float:
    """The 1-minute load average (runnable processes on the machine), 0.0 where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def package_versions(packages: Sequence[str] = PACKAGES) -> Dict[str, Optional[str]]:
    """Installed versions, read from package metadata (nothing is imported)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def machine_info() -> Dict[str, object]:
    """CPU model, cores, memory, OS, Python and framework versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "load_average": load_average(),
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }


# --------------------------------------------------------------------------------- results files


def markdown_table(columns: Sequence[tuple], rows: Sequence[Mapping[str, object]]) -> str:
    """A Markdown table; `columns` are (header, key, format) with format like "{:.1f}".

    Missing or None values print as an empty cell.
    """
    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append("" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The columns that say how a contender's windows went (`summarize`'s keys), after its rate.
WINDOW_COLUMNS = (("spread", "spread", "{:.0%}"), ("clean windows", "clean_windows", "{}"),
                  ("cores busy", "cores_busy", "{:.2f}"),
                  ("others' cores", "other_cores", "{:.2f}"))


def targets_table(targets: Sequence[Mapping[str, object]], value_format: str,
                  threshold_format: Optional[str] = None) -> str:
    """The targets of a benchmark as a Markdown table: target, measured, (threshold), met,
    rounds, clean; targets measured as None are left out."""
    columns = [("target", "target", "{}"), ("measured", "value", value_format)]
    if threshold_format:
        columns.append(("threshold", "threshold", threshold_format))
    columns += [("met", "status", "{}"), ("rounds", "rounds", "{}"), ("clean", "clean", "{}")]
    status = {True: "yes", False: "**no**", None: "not measured"}
    return markdown_table(columns, [{**t, "status": status[t["met"]]} for t in targets
                                    if t["value"] is not None])


def timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")


def write_results(result: Mapping[str, object], markdown: str, name: str,
                  directory: str = RESULTS_DIR,
                  readme_section: Optional[str] = None) -> Dict[str, str]:
    """Write `<name>-<UTC time>.json` and `.md` into `directory`, and quote the table in the
    README's `readme_section` when one is given; returns the files' paths."""
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, f"{name}-{result.get('created', timestamp())}")
    with open(stem + ".json", "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, sort_keys=False)
        handle.write("\n")
    with open(stem + ".md", "w", encoding="utf-8") as handle:
        handle.write(markdown.rstrip() + "\n")
    if readme_section:
        update_readme(readme_section, markdown)
    return {"json": stem + ".json", "markdown": stem + ".md"}


def update_readme(section: str, markdown: str, readme: str = README) -> bool:
    """Replace the text between `<!-- {section}:begin -->` and `<!-- {section}:end -->`.

    Returns False (and changes nothing) when the README has no such markers.
    """
    if not os.path.exists(readme):
        return False
    with open(readme, encoding="utf-8") as handle:
        text = handle.read()
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        return False
    text = pattern.sub(lambda _: f"{begin}\n{markdown.strip()}\n{end}", text)
    with open(readme, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
