"""Files API throughput on the embedded server: a 100 MB upload and download through the API (official SDK, loopback)
against copying the same file on the same disk, same run.

    uv run python bench/files_throughput.py [--mb 100] [--runs 3]

Prints the medians and the ratios API time / disk copy time (upload, download).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import emit, stack


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp, stack() as s:
        src = Path(tmp) / "src.bin"
        with src.open("wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1024 * 1024))
        client = s.client()
        copy, up, down = [], [], []
        for i in range(args.runs):
            t0 = time.perf_counter()
            shutil.copyfile(src, Path(tmp) / f"copy{i}.bin")
            copy.append(time.perf_counter() - t0)
            (Path(tmp) / f"copy{i}.bin").unlink()
            t0 = time.perf_counter()
            with src.open("rb") as fh:
                meta = client.beta.files.upload(file=("big.bin", fh, "application/octet-stream"))
            up.append(time.perf_counter() - t0)
            assert meta.size_bytes == size
            t0 = time.perf_counter()
            with client.beta.files.with_streaming_response.download(meta.id) as resp:
                got = sum(len(chunk) for chunk in resp.iter_bytes(1 << 20))
            down.append(time.perf_counter() - t0)
            assert got == size
            client.beta.files.delete(meta.id)
        c, u, d = statistics.median(copy), statistics.median(up), statistics.median(down)
        emit(
            bench="files_throughput",
            size_mb=args.mb,
            runs=args.runs,
            disk_copy_s=round(c, 3),
            upload_s=round(u, 3),
            download_s=round(d, 3),
            upload_mb_per_s=round(args.mb / u, 1),
            download_mb_per_s=round(args.mb / d, 1),
            upload_vs_copy=round(u / c, 2),
            download_vs_copy=round(d / c, 2),
        )


if __name__ == "__main__":
    main()
