"""`web_fetch` and `web_search`, run by the platform (never by the sandbox).

`web_search` asks the configured provider (`MANAGED_AGENTS_WEB_SEARCH_URL`, a SearXNG-compatible JSON API) and
returns the top results, filtered by the tool config's allowed/blocked domains. `web_fetch` runs under the
environment's networking policy.

Which hosts may be fetched:
* the tool config's `blocked_domains` never, and only its `allowed_domains` when that list is set;
* a `limited` environment: only hosts in `networking.allowed_hosts` (exact, or `*.example.com` for subdomains);
* addresses that are private, loopback, link-local or reserved (a cloud metadata endpoint, the platform's own
  services) only when the host is listed explicitly in a `limited` environment's `allowed_hosts`.
Every redirect is checked again. Responses are read up to a byte cap; HTML becomes plain text.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import cast
from urllib.parse import urljoin, urlsplit

import httpx2

from managed_agents.domain.events import JsonObject

MAX_BYTES = 2_000_000
MAX_REDIRECTS = 5
TIMEOUT_SECONDS = 20.0
DEFAULT_MAX_CHARS = 100_000
WEB_FETCH_DEFINITION: JsonObject = {
    "name": "web_fetch",
    "description": (
        "Fetch a web page or document over HTTP(S) and return its content as text. Use it to read a URL the user"
        " gave or one found earlier. Hosts may be restricted by the environment's networking policy."
    ),
    "input_schema": {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "The absolute http(s) URL to fetch"}},
        "required": ["url"],
    },
}


WEB_SEARCH_DEFINITION: JsonObject = {
    "name": "web_search",
    "description": "Search the web. Returns the top results with their title, URL and a snippet.",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to search for"}},
        "required": ["query"],
    },
}
MAX_RESULTS = 10


class FetchRefused(Exception):
    pass


@dataclass(frozen=True)
class FetchPolicy:
    networking: JsonObject
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    max_chars: int = DEFAULT_MAX_CHARS

    @classmethod
    def of(cls, networking: JsonObject | None, tool_config: JsonObject | None) -> FetchPolicy:
        cfg = tool_config or {}
        tokens = cfg.get("max_content_tokens")
        return cls(
            networking=networking or {"type": "unrestricted"},
            allowed_domains=tuple(str(d).lower() for d in cast(list[str], cfg.get("allowed_domains") or [])),
            blocked_domains=tuple(str(d).lower() for d in cast(list[str], cfg.get("blocked_domains") or [])),
            max_chars=tokens * 4 if isinstance(tokens, int) and tokens > 0 else DEFAULT_MAX_CHARS,
        )

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchRefused(f"web_fetch only fetches absolute http(s) URLs, not {url[:200]!r}")
        host = parts.hostname.lower()
        if any(_matches(host, d) for d in self.blocked_domains):
            raise FetchRefused(f"{host} is in this agent's web_fetch blocked_domains")
        if self.allowed_domains and not any(_matches(host, d) for d in self.allowed_domains):
            raise FetchRefused(f"{host} is not in this agent's web_fetch allowed_domains")
        listed = False
        if self.networking.get("type") == "limited":
            allowed = [str(h).lower() for h in cast(list[str], self.networking.get("allowed_hosts") or [])]
            listed = any(_matches(host, h) for h in allowed)
            if not listed:
                raise FetchRefused(f"{host} is not in the environment's networking.allowed_hosts (limited networking)")
        if not listed:
            for address in _addresses(host, parts.port or (443 if parts.scheme == "https" else 80)):
                if not address.is_global:
                    raise FetchRefused(
                        f"{host} resolves to a non-public address ({address}); list it in a limited environment's"
                        " networking.allowed_hosts to allow it"
                    )


def _matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower().strip()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern or (host.endswith("." + pattern) and not pattern.replace(".", "").isdigit())


def resolve_addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses `host` stands for (itself when it is one); FetchRefused when it does not resolve."""
    return _addresses(host, port)


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FetchRefused(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]


class _Text(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    parser = _Text()
    parser.feed(html)
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return parser.title.strip(), "\n".join(line for line in lines if line)


def fetch(url: str, policy: FetchPolicy) -> tuple[list[JsonObject], bool]:
    """The tool result (content blocks, is_error) of fetching `url` under `policy`."""
    try:
        return [{"type": "text", "text": _fetch(url, policy)}], False
    except FetchRefused as exc:
        return [{"type": "text", "text": f"web_fetch refused: {exc}"}], True
    except httpx2.HTTPError as exc:
        return [{"type": "text", "text": f"web_fetch failed: {type(exc).__name__}: {exc}"[:1000]}], True


def _fetch(url: str, policy: FetchPolicy) -> str:
    with httpx2.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            policy.check(url)
            with client.stream("GET", url, headers={"user-agent": "managed-agents-web-fetch/1"}) as resp:
                if resp.is_redirect and "location" in resp.headers:
                    url = urljoin(url, resp.headers["location"])
                    continue
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body.extend(chunk)
                    if len(body) >= MAX_BYTES:
                        break
                if resp.status_code >= 400:
                    raise FetchRefused(f"{url} answered HTTP {resp.status_code}")
                ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                text = bytes(body).decode(resp.encoding or "utf-8", errors="replace")
                title = ""
                if ctype in ("text/html", "application/xhtml+xml"):
                    title, text = html_to_text(text)
                elif not (ctype.startswith("text/") or ctype in ("application/json", "application/xml", "")):
                    raise FetchRefused(f"{url} returned {ctype}, which web_fetch cannot read as text")
                head = f"URL: {url}\n" + (f"Title: {title}\n" if title else "")
                truncated = len(text) > policy.max_chars
                text = text[: policy.max_chars] + ("\n[content truncated]" if truncated else "")
                return head + "\n" + text
        raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")


def search(provider_url: str, query: str, tool_config: JsonObject | None) -> tuple[list[JsonObject], bool]:
    """The tool result of a web search through the configured provider."""
    query = query.strip()
    if not query:
        return [{"type": "text", "text": "web_search needs a non-empty query"}], True
    policy = FetchPolicy.of(None, tool_config)
    try:
        with httpx2.Client(timeout=TIMEOUT_SECONDS, trust_env=False) as client:
            resp = client.get(provider_url, params={"q": query, "format": "json"})
            resp.raise_for_status()
            results = cast(list[JsonObject], cast(JsonObject, resp.json()).get("results") or [])
    except (httpx2.HTTPError, ValueError, AttributeError) as exc:
        return [{"type": "text", "text": f"web_search failed: the search provider did not answer ({exc})"[:1000]}], True
    lines: list[str] = []
    for r in results:
        url = str(r.get("url") or "")
        host = (urlsplit(url).hostname or "").lower()
        if not host or any(_matches(host, d) for d in policy.blocked_domains):
            continue
        if policy.allowed_domains and not any(_matches(host, d) for d in policy.allowed_domains):
            continue
        snippet = " ".join(str(r.get("content") or "").split())[:500]
        lines.append(f"{len(lines) + 1}. {r.get('title') or url}\n   {url}\n   {snippet}")
        if len(lines) == MAX_RESULTS:
            break
    if not lines:
        return [{"type": "text", "text": f"No results for {query!r}."}], False
    return [{"type": "text", "text": f"Results for {query!r}:\n\n" + "\n".join(lines)}], False
