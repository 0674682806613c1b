"""memories.list scaling: the LAST page of 100 of a 10,000-memory store vs a 100-memory store (goal <= 1.5x).

Both stores live in one workspace of one embedded server (SQLite). Measured through the service and through the API
with the official SDK (`memories.list(limit=100, page=<token of the last page>)`). Prints median times and ratios.
"""

from __future__ import annotations

import statistics
import time

from _common import emit, stack

from managed_agents.services.keys import Principal
from managed_agents.services.memory_stores import _page_token
from managed_agents.wire.memory_stores import MemoryCreateParams, MemoryStoreCreateParams

SMALL, LARGE, PAGE, REPEAT = 100, 10_000, 100, 200


def main() -> None:
    with stack() as s:
        client = s.client()
        svc = s.rt.memory_stores
        assert svc is not None
        ws = str(s.rt.keys.workspaces()[0]["id"])
        p = Principal(workspace_id=ws, key_id="apikey_bench")
        stores: dict[int, str] = {}
        for n in (LARGE, SMALL):  # the large store first: the small one's rows sort after it in the index
            sid = str(svc.create(ws, MemoryStoreCreateParams(name=f"bench {n}"))["id"])
            for i in range(n):
                svc.create_memory(p, sid, MemoryCreateParams(path=f"/notes/{i:06d}.md", content=f"memory {i}"), "basic")
            stores[n] = sid
        service_ms: dict[int, list[float]] = {SMALL: [], LARGE: []}
        api_ms: dict[int, list[float]] = {SMALL: [], LARGE: []}
        tokens = {n: _page_token(f"/notes/{n - PAGE - 1:06d}.md") for n in stores}

        def via_service(n: int) -> None:
            items, nxt = svc.list_memories(
                ws, stores[n], path_prefix=None, depth=None, view="basic", limit=PAGE, page=tokens[n]
            )
            assert len(items) == PAGE and nxt is None

        def via_api(n: int) -> None:
            page = client.beta.memory_stores.memories.list(stores[n], limit=PAGE, page=tokens[n])
            assert len(page.data) == PAGE and not page.next_page

        for fn, out, repeat in ((via_service, service_ms, REPEAT), (via_api, api_ms, REPEAT // 2)):
            for n in stores:
                fn(n)  # warm
            for _ in range(repeat):  # interleaved, so a noisy moment of this shared machine hits both sizes
                for n in stores:
                    t0 = time.perf_counter()
                    fn(n)
                    out[n].append(time.perf_counter() - t0)
        service_med = {n: statistics.median(v) * 1000 for n, v in service_ms.items()}
        api_med = {n: statistics.median(v) * 1000 for n, v in api_ms.items()}
        for via, result in (("service", service_med), ("api", api_med)):
            emit(
                bench="memories_list_scaling",
                via=via,
                small=SMALL,
                large=LARGE,
                last_page_small_ms=round(result[SMALL], 3),
                last_page_large_ms=round(result[LARGE], 3),
                ratio=round(result[LARGE] / result[SMALL], 3),
                goal="<= 1.5",
            )


if __name__ == "__main__":
    main()
