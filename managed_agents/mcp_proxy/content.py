"""MCP results and tool listings in the Messages API's shapes (what `agent.mcp_tool_result` and the model take)."""

from __future__ import annotations

import json
from typing import cast

from mcp import types

from managed_agents.domain.events import JsonObject

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def tool_definition(tool: types.Tool) -> JsonObject:
    """A Messages API tool definition with the server's real input schema."""
    schema = cast(JsonObject, dict(tool.inputSchema or {}))
    schema.setdefault("type", "object")
    return {"name": tool.name, "description": tool.description or "", "input_schema": schema}


def _resource_block(res: types.TextResourceContents | types.BlobResourceContents) -> JsonObject:
    mime = res.mimeType or ""
    if isinstance(res, types.TextResourceContents):
        return {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": res.text},
            "title": str(res.uri),
        }
    if mime == "application/pdf":
        return {
            "type": "document",
            "source": {"type": "base64", "media_type": mime, "data": res.blob},
            "title": str(res.uri),
        }
    if mime in IMAGE_TYPES:
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": res.blob}}
    return {"type": "text", "text": f"[binary resource {res.uri} ({mime or 'unknown type'}) omitted]"}


def content_blocks(result: types.CallToolResult) -> list[JsonObject]:
    """Text, image, document blocks; content the Messages API cannot hold becomes a short text note."""
    out: list[JsonObject] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            out.append({"type": "text", "text": item.text})
        elif isinstance(item, types.ImageContent):
            if item.mimeType in IMAGE_TYPES:
                out.append(
                    {"type": "image", "source": {"type": "base64", "media_type": item.mimeType, "data": item.data}}
                )
            else:
                out.append({"type": "text", "text": f"[image of type {item.mimeType} omitted: unsupported type]"})
        elif isinstance(item, types.AudioContent):
            out.append({"type": "text", "text": f"[audio of type {item.mimeType} omitted: unsupported content]"})
        elif isinstance(item, types.EmbeddedResource):
            out.append(_resource_block(item.resource))
        elif isinstance(item, types.ResourceLink):
            out.append(
                {"type": "text", "text": f"[resource link: {item.uri}" + (f" ({item.name})]" if item.name else "]")}
            )
    if not out and result.structuredContent is not None:
        out.append({"type": "text", "text": json.dumps(result.structuredContent, ensure_ascii=False)})
    return out
