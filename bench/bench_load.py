"""Server memory under several visitors at once, and whether it comes back when they leave (issue 29).

    python -m bench.bench_load [--sessions 6] [--seconds 100] [--settle 60] [--big-mb 0]

Starts ``streamlit run app.py`` on a free 127.0.0.1 port and drives it with headless Chromium (Debian's
``chromium`` and the ``playwright`` package, as the browser tests do; nothing downloads a browser):

1. idle: the server is up and no one has visited yet;
2. one visitor uploads one song and waits for its genre: "after the first analysis";
3. ``--sessions`` visitors at once upload songs one after another for ``--seconds``; every answer on
   the page is checked against the library's for the same file (:func:`codeFeature.predict_file`, what
   ``python -m codeFeature FILE`` prints);
4. ``--big-mb``: one more visitor uploads a wav of about that size (0: none);
5. every browser closes; the server's memory is read again after ``--settle`` seconds.

The songs are real GTZAN tracks from ``../shared/data/gtzan/genres`` when present (one per genre,
read there, never copied into the repository), else synthetic ones written to a temporary folder.
The server's resident memory (VmRSS of its process) is sampled every half second. The target of
issue 29 is that memory after the sessions close is within 150 MB of its level after the first
analysis. Extra ``streamlit`` options go after ``--``, e.g. ``-- --server.disconnectedSessionTTL 30``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from codeFeature import engines  # noqa: E402

GTZAN = REPO.parent / "shared" / "data" / "gtzan" / "genres"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_MB = 150
RESULT_TIMEOUT_MS = 600_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (10^6 bytes), from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def breakdown(pid: int) -> str:
    """Where a process's resident memory lies, in MB, from /proc/PID/smaps: glibc's main heap, the
    heaps of its other arenas (an anonymous 64 MiB reservation each, partly mapped), other anonymous
    mappings (numpy's and OpenVINO's big blocks, thread stacks), files (libraries, models); and its threads."""
    maps = []
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            field = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", field[0]):
                lo, hi = (int(v, 16) for v in field[0].split("-"))
                maps.append({"size": hi - lo, "start": lo, "end": hi, "perms": field[1],
                             "name": field[5] if len(field) > 5 else "", "rss": 0})
            elif field[0] == "Rss:":
                maps[-1]["rss"] = int(field[1]) * 1024
    parts = {"main heap": 0, "arenas": 0, "other anon": 0, "files": 0}
    arena_count = 0
    for k, m in enumerate(maps):
        if m["name"] == "[heap]":
            parts["main heap"] += m["rss"]
        elif m["name"].startswith("/"):
            parts["files"] += m["rss"]
        elif not m["name"]:
            # an arena heap: 64 MiB aligned, its used part read-write, the rest reserved (---p) just after
            following = maps[k + 1] if k + 1 < len(maps) else None
            aligned = m["start"] % (64 << 20) == 0
            rest = following and following["start"] == m["end"] and following["perms"].startswith("---") \
                and not following["name"]
            if aligned and m["perms"].startswith("rw") and (m["size"] == 64 << 20 or
                                                            (rest and m["size"] + following["size"] == 64 << 20)):
                parts["arenas"] += m["rss"]
                arena_count += 1
            else:
                parts["other anon"] += m["rss"]
    with open(f"/proc/{pid}/status") as status:
        threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    return (", ".join(f"{k} {v / 1e6:.0f}" for k, v in parts.items())
            + f" ({arena_count} arena heaps); {threads} threads")


class Sampler(threading.Thread):
    """Reads the server's RSS every half second; keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return


def songs(workdir: Path) -> list[Path]:
    """One GTZAN track per genre when the data set is here, else eight synthetic 30 s songs."""
    if GTZAN.is_dir():
        found = [sorted(d.glob("*.wav"))[0] for d in sorted(GTZAN.iterdir()) if d.is_dir() and any(d.glob("*.wav"))]
        if found:
            return found
    from bench.songs import music_like
    import soundfile as sf

    out = []
    for seed in range(8):
        path = workdir / f"synthetic-{seed}.wav"
        sf.write(path, music_like(30.0, seed=seed), 44100, subtype="PCM_16")
        out.append(path)
    return out


def big_song(workdir: Path, megabytes: float) -> Path:
    """A 44.1 kHz stereo 16-bit wav of about ``megabytes`` (10^6 bytes): a long live recording."""
    import soundfile as sf

    from bench.songs import music_like

    seconds = megabytes * 1e6 / (44100 * 2 * 2)
    piece = music_like(60.0, seed=99)
    path = workdir / f"big-{megabytes:g}MB.wav"
    with sf.SoundFile(path, "w", 44100, 2, subtype="PCM_16") as out:
        left = int(seconds * 44100)
        while left > 0:
            out.write(piece[:left])
            left -= len(piece)
    return path


def expected_answers(paths: list[Path], model_name: str | None) -> dict[str, str]:
    """The library's headline for each file, as the app shows it ("Rock", "Not sure: rock or metal")."""
    from codeFeature import load_model, predict_file

    model = load_model(model_name) if model_name else load_model()
    answers = {}
    for path in paths:
        headline = predict_file(path, model=model).verdict.headline
        answers[path.name] = headline[:1].upper() + headline[1:]
    return answers


async def page_answer(page) -> str:
    name = page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(r"^\s*Genre\s*$"))
    metric = page.locator('[data-testid="stMetric"]', has=name)
    value = (await metric.locator('[data-testid="stMetricValue"]').inner_text()).strip()
    delta = metric.locator('[data-testid="stMetricDelta"]')
    return f"{value}: {(await delta.inner_text()).strip()}" if await delta.count() else value


async def analyse(page, path: Path) -> str:
    """Upload ``path`` and wait until the page shows this file's result; returns the headline."""
    await page.locator("input[type=file]").set_input_files(str(path))
    # each song is analysed on a freshly loaded page (a new session), so the first result or refusal
    # shown is this file's
    done = page.get_by_text(re.compile(r"\d+ s analysed|Try another file|try again in a few minutes")).first
    await done.wait_for(timeout=RESULT_TIMEOUT_MS)
    if "analysed" not in await done.inner_text():
        return "refused: " + (await done.inner_text()).strip()
    return await page_answer(page)


async def open_page(browser, url: str):
    context = await browser.new_context(viewport={"width": 1300, "height": 1000})
    page = await context.new_page()
    await page.goto(url, wait_until="domcontentloaded")
    await page.locator("input[type=file]").wait_for(state="attached", timeout=180_000)
    return context, page


async def session(browser, url: str, files: list[Path], first: int, until: float, answers: dict,
                  results: list) -> None:
    context, page = await open_page(browser, url)
    try:
        i = first
        while time.monotonic() < until:
            path = files[i % len(files)]
            # a fresh page per song: the uploader then always changes, as when a visitor comes back
            if i != first:
                await page.goto(url, wait_until="domcontentloaded")
                await page.locator("input[type=file]").wait_for(state="attached", timeout=180_000)
            got = await analyse(page, path)
            results.append((path.name, got, answers.get(path.name)))
            i += 1
    finally:
        await context.close()


async def drive(url: str, args, files: list[Path], answers: dict, server_pid: int, sampler: Sampler) -> dict:
    from playwright.async_api import async_playwright

    figures: dict = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context, page = await open_page(browser, url)
            got = await analyse(page, files[0])
            await context.close()
            await asyncio.sleep(3)
            figures["first"] = rss_mb(server_pid)
            figures["first_parts"] = breakdown(server_pid)

            figures["first_answer"] = (files[0].name, got, answers.get(files[0].name))
            results: list = []
            until = time.monotonic() + args.seconds
            started = time.monotonic()
            await asyncio.gather(*(session(browser, url, files, k, until, answers, results)
                                   for k in range(args.sessions)))
            figures["load_seconds"] = time.monotonic() - started
            figures["results"] = results
            figures["after_load"] = rss_mb(server_pid)
            if args.big_mb > 0:
                big = big_song(Path(args.workdir), args.big_mb)
                context, page = await open_page(browser, url)
                figures["big"] = (big.stat().st_size / 1e6, await analyse(page, big))
                await context.close()
                figures["after_big"] = rss_mb(server_pid)
        finally:
            await browser.close()
    return figures


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=100.0, help="how long the sessions keep uploading")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait after the sessions close")
    parser.add_argument("--big-mb", type=float, default=0.0, help="then one upload of a wav this large (MB)")
    parser.add_argument("--model", default=None, help="the model to compare with (default: the app's default)")
    parser.add_argument("--log", default=None, help="keep the server's output in this file")
    args = parser.parse_args(argv)
    if CHROMIUM is None:
        print("no chromium on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-load-") as workdir:
        args.workdir = workdir
        files = songs(Path(workdir))
        print(f"CPU: {engines.cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
        print(f"songs: {len(files)} ({'GTZAN' if files[0].is_relative_to(GTZAN) else 'synthetic'}); "
              f"{args.sessions} sessions for {args.seconds:g} s; settle {args.settle:g} s")
        answers = expected_answers(files, args.model)
        port = free_port()
        log_path = Path(args.log) if args.log else Path(workdir) / "server.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
                 "--server.address", "127.0.0.1", "--server.headless", "true",
                 "--browser.gatherUsageStats", "false", *extra], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + 180
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.time() > deadline:
                        print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
                        return 1
                    time.sleep(0.5)
            time.sleep(3)
            idle = rss_mb(server.pid)
            shares = {"idle": breakdown(server.pid)}
            sampler = Sampler(server.pid)
            sampler.start()
            figures = asyncio.run(drive(url, args, files, answers, server.pid, sampler))
            closed_at = time.monotonic()
            trace = []
            while time.monotonic() - closed_at < args.settle:
                time.sleep(5)
                trace.append(rss_mb(server.pid))
            settled = rss_mb(server.pid)
            shares["first analysis"] = figures["first_parts"]
            shares["after closing"] = breakdown(server.pid)
            sampler.stop.set()
            alive = server.poll() is None
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)

    results = figures["results"]
    wrong = [r for r in results + [figures["first_answer"]] if r[1] != r[2]]
    print(f"answers: {len(results) + 1} analyses ({len(results)} under load in {figures['load_seconds']:.0f} s), "
          f"{len(results) + 1 - len(wrong)} equal to the library's" + (f"; DIFFERENT: {wrong}" if wrong else ""))
    if "big" in figures:
        print(f"big upload: {figures['big'][0]:.0f} MB -> {figures['big'][1]!r}")
    print(f"server RSS, MB: idle {idle:.0f}; after the first analysis {figures['first']:.0f}; "
          f"peak {sampler.peak:.0f}; when the sessions ended {figures['after_load']:.0f}"
          + (f"; after the big upload {figures['after_big']:.0f}" if "after_big" in figures else "")
          + f"; {args.settle:g} s after every session closed {settled:.0f}")
    for when, parts in shares.items():
        print(f"  {when}: {parts}")
    print("  every 5 s after closing: " + " ".join(f"{v:.0f}" for v in trace))
    within = settled - figures["first"] <= TARGET_MB
    print(f"after closing - after first analysis = {settled - figures['first']:+.0f} MB: "
          f"{'within' if within else 'NOT within'} {TARGET_MB} MB (issue 29's target); server alive: {alive}")
    return 0 if (within and not wrong and alive) else 1


if __name__ == "__main__":
    sys.exit(main())
