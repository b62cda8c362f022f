"""An RFC 6455 conformance corpus for the terminal websocket, modelled on the server cases of
the Autobahn test suite (its section numbers are in the test names and ids): framing,
pings and pongs, reserved bits, opcodes, fragmentation with interleaved control frames,
UTF-8 validation of text messages, close frames and codes, size limits, unmasked frames and
ping floods. Each case opens a raw TCP connection to a jupyter server running the extension,
sends hand-built frames and checks what comes back: a close frame with the right code (then
the end of the TCP connection), or the terminal acting on the message, delivered whole.

``test_websocket.py`` has the upgrade, the helpers this file uses, and a first set of these
cases; this file widens them the way Autobahn does (before/after traffic around the bad
frame, every code, every split, fail-fast on headers and fragments)."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
from typing import Any

import pytest

from tests.server_ext import test_websocket as base
from tests.server_ext.test_websocket import (
    BINARY,
    CLOSE,
    CONT,
    LIMIT,
    PING,
    PONG,
    SMALL_LIMIT,
    TEXT,
    Client,
    Open,
    assert_healthy,
    close_body,
    frame,
    msg,
    no_connections,
    opened,
    sessions,
)

# the raw client and the per-test server config of test_websocket.py, as fixtures here too
connect = base.connect
jp_server_config = base.jp_server_config

P = pytest.param
AFTER = b"after-the-bad-frame"
#: how long a fail-fast case may take: the server must not wait for bytes never sent
FAST = 3.0

_tags = itertools.count(100)


async def echoes(client: Client, how: str = "echo") -> None:
    """The terminal runs a command sent on this connection (so the connection works)."""
    n = next(_tags)
    await client.send(frame(TEXT, msg("stdin", f"{how} tag-$(({n}*3))\r")))
    await client.expect(f"tag-{n * 3}")


async def fails(client: Client, data: bytes, code: int, wait: float = 10) -> bytes:
    """Send ``data`` then a ping; the server closes with ``code`` and ignores the ping."""
    await client.send(data + frame(PING, AFTER))
    payload = await client.expect_close(code, wait)
    assert AFTER not in client.pongs, "a frame after the failure was still processed"
    return payload


async def size_is(client: Client, rows: int, cols: int) -> None:
    """The pty has this size (``set_size`` messages arrived and were parsed)."""
    n = next(_tags)
    await client.send(frame(TEXT, msg("stdin", f"stty size; echo sz-$(({n}+0))\r")))
    await client.expect(f"sz-{n}")
    assert f"{rows} {cols}" in client.output


def fragments(opcode: int, data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` as one message cut at ``cuts``: a first frame, continuations, FIN on the last."""
    bounds = [0, *cuts, len(data)]
    parts = [data[a:b] for a, b in itertools.pairwise(bounds)]
    return [
        frame(CONT if i else opcode, part, fin=i == len(parts) - 1) for i, part in enumerate(parts)
    ]


# ---------------------------------------------------------------------- 1 framing


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 128, 65535, 65536, 1 << 20])
async def test_1_payload_lengths(connect: Open, opcode: int, size: int) -> None:
    """1.1/1.2: every length encoding at its edges. Too short for JSON: ignored, not fatal."""
    client = await opened(connect)
    rows, cols = 11 + size % 29, 50 + size % 31
    body = msg("set_size", rows, cols, pad_to=size)
    await client.send(frame(opcode, body if len(body) == size else b" " * size))
    if len(body) == size:
        await size_is(client, rows, cols)
    else:
        await echoes(client)


@pytest.mark.parametrize("chunk", [2, 3, 7, 131])
async def test_1_frames_chopped_into_writes(connect: Open, chunk: int) -> None:
    """1.1.x/5.5: any split of the byte stream (mid-header, mid-mask, mid-payload) is fine."""
    client = await opened(connect)
    data = b"".join(
        [
            frame(PING, b"chopped"),
            frame(TEXT, msg("set_size", 33, 91, pad_to=300)),
            *fragments(TEXT, msg("stdin", "echo chop-$((7*8))\r"), [3, 9]),
        ]
    )
    for i in range(0, len(data), chunk):
        await client.send(data[i : i + chunk])
        await asyncio.sleep(0.001)
    await client.expect("chop-56")
    await client.expect_pong(b"chopped")
    await size_is(client, 33, 91)


# ---------------------------------------------------------------------- 2 pings and pongs


@pytest.mark.parametrize(
    "payload",
    [P(b"", id="2.1-empty"), P(b"Hello, world!", id="2.2-text"),
     P(bytes(range(125)), id="2.3-binary"), P(b"\xfe" * 125, id="2.4-125-bytes")],
)  # fmt: skip
async def test_2_ping_answered_with_the_same_payload(connect: Open, payload: bytes) -> None:
    client = await opened(connect)
    await client.send(frame(PING, payload))
    await client.expect_pong(payload)
    await echoes(client)


async def test_2_7_unsolicited_pongs_are_ignored(connect: Open) -> None:
    client = await opened(connect)
    await client.send(frame(PONG, b""), frame(PONG, b"unsolicited" * 11))
    await echoes(client)


@pytest.mark.parametrize("separate", [False, True], ids=["2.10-one-write", "2.11-one-per-write"])
async def test_2_ten_pings_ten_pongs_in_order(connect: Open, separate: bool) -> None:
    client = await opened(connect)
    pings = [frame(PING, f"payload-{i}".encode()) for i in range(10)]
    if separate:
        for ping in pings:
            await client.send(ping)
    else:
        await client.send(*pings)
    await client.expect_pong(b"payload-9")
    assert client.pongs == [f"payload-{i}".encode() for i in range(10)]


@pytest.mark.parametrize(
    "data",
    [P(frame(PING, b"x" * 126), id="2.5-ping-126"), P(frame(PONG, b"x" * 126), id="pong-126"),
     P(frame(CLOSE, close_body(1000, b"x" * 124)), id="7.3.6-close-126"),
     P(frame(PING, b"a", fin=False) + frame(CONT, b"b"), id="5.1-fragmented-ping"),
     P(frame(PONG, b"a", fin=False) + frame(CONT, b"b"), id="5.2-fragmented-pong"),
     P(frame(CLOSE, b"", fin=False), id="fragmented-close")],
)  # fmt: skip
async def test_2_5_oversized_or_fragmented_control_frames_are_1002(
    connect: Open, jp_serverapp: Any, data: bytes
) -> None:
    client = await opened(connect)
    await fails(client, data, 1002)
    await no_connections(jp_serverapp)
    await assert_healthy(connect, 5)


async def test_2_oversized_control_frame_is_refused_on_its_header(connect: Open) -> None:
    """Fail fast: the length in the header is enough, the payload is never sent."""
    client = await opened(connect)
    await client.send(struct.pack("!BBH", 0x80 | PING, 0x80 | 126, 200) + b"mask")
    await client.expect_close(1002, FAST)


# ---------------------------------------------------------------------- 3 reserved bits


@pytest.mark.parametrize(
    ("rsv", "opcode", "payload"),
    [P(0x10, TEXT, msg("stdin", ""), id="3.1-rsv1-text"),
     P(0x20, TEXT, msg("stdin", ""), id="3.2-rsv2-text"),
     P(0x30, TEXT, msg("stdin", ""), id="3.3-rsv3-text"),
     P(0x40, BINARY, msg("stdin", ""), id="3.4-rsv4-binary"),
     P(0x50, BINARY, b"\x00\xff", id="3.5-rsv5-binary"),
     P(0x60, PING, b"ping", id="3.6-rsv6-ping"),
     P(0x70, CLOSE, close_body(1000), id="3.7-rsv7-close"),
     P(0x40, CONT, b"", id="rsv-continuation")],
)  # fmt: skip
async def test_3_reserved_bits_are_1002_after_the_good_frames(
    connect: Open, rsv: int, opcode: int, payload: bytes
) -> None:
    """Autobahn 3.x: a good message first (it is acted on), then the bad frame, then a ping
    (not answered: nothing after the bad frame counts)."""
    client = await opened(connect)
    good = frame(TEXT, msg("stdin", "echo rsv-$((4*5))\r"))
    await fails(client, good + frame(opcode, payload, rsv=rsv), 1002)
    again = await opened(connect)  # the good message ran: the replay shows its output
    await again.expect("rsv-20")


# ---------------------------------------------------------------------- 4 opcodes


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("payload", [b"", b"reserved opcode"], ids=["empty", "payload"])
async def test_4_reserved_opcodes_are_1002(connect: Open, opcode: int, payload: bytes) -> None:
    client = await opened(connect)
    await client.send(frame(PING, b"before"))
    await client.expect_pong(b"before")
    await fails(client, frame(opcode, payload), 1002)


# ---------------------------------------------------------------------- 5 fragmentation


async def test_5_3_text_in_two_fragments_one_write(connect: Open) -> None:
    client = await opened(connect)
    await client.send(*fragments(TEXT, msg("stdin", "echo two-$((2*11))\r"), [10]))
    await client.expect("two-22")


async def test_5_4_text_in_two_fragments_separate_writes(connect: Open) -> None:
    client = await opened(connect)
    first, second = fragments(TEXT, msg("stdin", "echo sep-$((3*11))\r"), [10])
    await client.send(first)
    await asyncio.sleep(0.1)
    await client.send(second)
    await client.expect("sep-33")


async def test_5_binary_message_in_fragments(connect: Open) -> None:
    client = await opened(connect)
    await client.send(*fragments(BINARY, msg("stdin", "echo binfrag-$((5*11))\r"), [1, 2, 20]))
    await client.expect("binfrag-55")


async def test_5_one_byte_per_fragment_and_empty_fragments(connect: Open) -> None:
    client = await opened(connect)
    data = msg("stdin", "echo bytewise-$((6*11))\r")
    await client.send(*fragments(TEXT, data, list(range(1, len(data)))))
    await client.expect("bytewise-66")
    empty = [frame(TEXT, b"", fin=False), frame(CONT, b"", fin=False)]
    await client.send(*empty, frame(CONT, msg("stdin", "echo empties-$((7*11))\r")))
    await client.expect("empties-77")
    await client.send(frame(TEXT, b"", fin=False), frame(CONT, b""))  # an empty message
    await echoes(client)


@pytest.mark.parametrize("control", [PING, PONG], ids=["ping", "pong"])
@pytest.mark.parametrize("separate", [False, True], ids=["5.6-one-write", "5.7-separate"])
async def test_5_control_frames_between_fragments(
    connect: Open, control: int, separate: bool
) -> None:
    client = await opened(connect)
    first, middle, last = fragments(TEXT, msg("stdin", "echo ctl-$((8*11))\r"), [5, 12])
    frames = [first, frame(control, b"between-1"), middle, frame(control, b"between-2"), last]
    if separate:
        for f in frames:
            await client.send(f)
            await asyncio.sleep(0.02)
    else:
        await client.send(*frames)
    await client.expect("ctl-88")
    if control == PING:
        await client.expect_pong(b"between-2")
        assert client.pongs == [b"between-1", b"between-2"]


async def test_5_19_many_pings_between_fragments_with_pauses(connect: Open) -> None:
    """5.19/5.20: the pongs arrive while the message is still incomplete, in order."""
    client = await opened(connect)
    parts = fragments(TEXT, msg("stdin", "echo slowfrag-$((9*11))\r"), [2, 4, 6, 8])
    for i, part in enumerate(parts):
        await client.send(part, frame(PING, f"ping-{i}".encode()))
        await client.expect_pong(f"ping-{i}".encode())
        assert "slowfrag-99" not in client.output
    await client.expect("slowfrag-99")
    assert client.pongs == [f"ping-{i}".encode() for i in range(len(parts))]


async def test_5_a_close_between_fragments_is_answered(connect: Open) -> None:
    """7.1.5: a close frame inside a fragmented message: the handshake, the message dropped."""
    client = await opened(connect)
    first, last = fragments(TEXT, msg("stdin", "echo dropped-$((10*11))\r"), [5])
    await client.send(first, frame(CLOSE, close_body(1000)), last)
    await client.expect_close(1000)
    again = await opened(connect)
    await echoes(again)
    assert "dropped-110" not in again.output


@pytest.mark.parametrize(
    "data",
    [P(frame(CONT, b"x"), id="5.9-orphan-continuation-fin"),
     P(frame(CONT, b"x", fin=False), id="5.12-orphan-continuation-nofin"),
     P(frame(CONT, b"x", fin=False) + frame(TEXT, msg("stdin", "")), id="5.13-orphan-then-text"),
     P(b"".join(fragments(TEXT, msg("stdin", ""), [3])) + frame(CONT, b"x", fin=False)
       + frame(CONT, b"y"), id="5.15-continuation-after-a-whole-message"),
     P(frame(TEXT, b"[", fin=False) + frame(TEXT, b"]"), id="5.18-text-inside-text"),
     P(frame(BINARY, b"[", fin=False) + frame(TEXT, b"]"), id="text-inside-binary"),
     P(frame(TEXT, b"[", fin=False) + frame(BINARY, b"]", fin=False), id="binary-inside-text")],
)  # fmt: skip
async def test_5_continuations_out_of_place_are_1002(
    connect: Open, jp_serverapp: Any, data: bytes
) -> None:
    client = await opened(connect)
    await fails(client, data, 1002)
    await no_connections(jp_serverapp)
    await assert_healthy(connect, 6)


@pytest.mark.parametrize(
    "head",
    [P(struct.pack("!BBH", 0x80 | CONT, 0x80 | 126, 60000), id="orphan-continuation"),
     P(frame(TEXT, b"[", fin=False) + struct.pack("!BBH", 0x80 | TEXT, 0x80 | 126, 60000),
       id="new-message-inside-a-fragmented-one")],
)  # fmt: skip
async def test_5_out_of_place_frames_are_refused_on_their_header(
    connect: Open, head: bytes
) -> None:
    """Fail fast: the frame's header says it cannot be right; its payload is never sent."""
    client = await opened(connect)
    await client.send(head + b"mask")
    await client.expect_close(1002, FAST)


# ---------------------------------------------------------------------- 6 UTF-8

VALID_UTF8 = [
    P("κόσμε", id="6.2-greek"),
    P("\u0080\u07ff\u0800\uffff\U00010000\U0010ffff", id="6.5-boundaries"),
    P("\ufffe\uffff\ufdd0", id="noncharacters-are-valid"),
    P("\ue000\U000f0000", id="private-use"),
    P("😀🎉 ✓", id="emoji"),
    P("\x00\x7f", id="ascii-edges"),
]

INVALID_UTF8 = [
    P(
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        id="6.3-surrogate-in-text",
    ),
    P(b"\x80", id="6.6-lone-continuation"),
    P(b"\x80\xbf\x80\xbf", id="6.9-continuations"),
    P(b"\xc0 \xe0 \xf0 ", id="6.10-lonely-starts"),
    P(b"\xc2", id="6.12-truncated-2"),
    P(b"\xe2\x82", id="6.12-truncated-3"),
    P(b"\xf0\x9f\x98", id="6.12-truncated-4"),
    P(b"\xfe", id="6.13-fe"),
    P(b"\xff\xff\xfe\xfe", id="6.13-ff-fe"),
    P(b"\xc0\xaf", id="6.14-overlong-2"),
    P(b"\xe0\x80\xaf", id="6.14-overlong-3"),
    P(b"\xf0\x80\x80\xaf", id="6.14-overlong-4"),
    P(b"\xf8\x80\x80\x80\xaf", id="6.14-five-bytes"),
    P(b"\xfc\x80\x80\x80\x80\xaf", id="6.14-six-bytes"),
    P(b"\xc1\xbf", id="6.15-overlong-max"),
    P(b"\xf4\x90\x80\x80", id="6.16-above-10ffff"),
    P(b"\xed\xa0\x80", id="6.17-high-surrogate"),
    P(b"\xed\xbf\xbf", id="6.17-low-surrogate"),
    P(b"\xed\xa0\x80\xed\xb0\x80", id="6.18-surrogate-pair"),
]


@pytest.mark.parametrize("text", VALID_UTF8)
@pytest.mark.parametrize("split", [False, True], ids=["whole", "every-byte"])
async def test_6_valid_utf8_is_delivered(connect: Open, text: str, split: bool) -> None:
    """A set_size message carrying the text as an extra (ignored) item: it is parsed."""
    client = await opened(connect)
    rows, cols = 20 + len(text), 70 + len(text)
    data = json.dumps(["set_size", rows, cols, text], ensure_ascii=False).encode()
    cuts = list(range(1, len(data))) if split else []
    await client.send(*fragments(TEXT, data, cuts))
    await size_is(client, rows, cols)


@pytest.mark.parametrize("bad", INVALID_UTF8)
@pytest.mark.parametrize("split", [False, True], ids=["whole", "split-in-the-sequence"])
async def test_6_invalid_utf8_is_1007(
    connect: Open, jp_serverapp: Any, bad: bytes, split: bool
) -> None:
    client = await opened(connect)
    data = b'["stdin", "' + bad + b'"]'
    cuts = [11 + len(bad) // 2] if split else []  # 11: the bytes before ``bad``
    await fails(client, b"".join(fragments(TEXT, data, cuts)), 1007)
    await no_connections(jp_serverapp)
    await assert_healthy(connect, 7)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80"])
async def test_6_4_invalid_utf8_fails_fast_in_a_fragment(connect: Open, bad: bytes) -> None:
    """6.4.x: a fragment that cannot start valid UTF-8 fails the connection at once, not
    when (if ever) the message ends."""
    client = await opened(connect)
    await client.send(frame(TEXT, b'["stdin", "' + bad, fin=False))
    await client.expect_close(1007, FAST)


async def test_6_binary_messages_are_not_utf8_checked(connect: Open) -> None:
    client = await opened(connect)
    await client.send(frame(BINARY, b"\xff\xfe\xed\xa0\x80"))  # not JSON: ignored
    await echoes(client)


# ---------------------------------------------------------------------- 7 closing


async def test_7_1_1_a_message_then_a_close(connect: Open) -> None:
    client = await opened(connect)
    await client.send(frame(TEXT, msg("stdin", "echo last-$((12*11))\r")))
    await client.expect("last-132")
    await client.send(frame(CLOSE, close_body(1000)))
    assert await client.expect_close(1000) == close_body(1000)


@pytest.mark.parametrize(
    "after",
    [P(frame(CLOSE, close_body(1001)), id="7.1.2-second-close"),
     P(frame(PING, AFTER), id="7.1.3-ping"),
     P(b"".join(fragments(TEXT, msg("stdin", "echo no\r"), [3])), id="7.1.4-fragmented-text")],
)  # fmt: skip
async def test_7_1_frames_after_the_close_are_ignored(connect: Open, after: bytes) -> None:
    client = await opened(connect)
    await client.send(frame(CLOSE, close_body(1000)), after)
    assert await client.expect_close(1000) == close_body(1000)  # one close, then EOF
    assert AFTER not in client.pongs


@pytest.mark.parametrize(
    ("body", "answer"),
    [P(b"", b"", id="7.3.1-empty"),
     P(close_body(1000), close_body(1000), id="7.3.3-code-only"),
     P(close_body(1000, b"Hello World!"), close_body(1000), id="7.3.4-code-reason"),
     P(close_body(1000, b"*" * 123), close_body(1000), id="7.3.5-123-byte-reason"),
     P(close_body(1000, "ü∂ß😀".encode()), close_body(1000), id="utf8-reason")],
)  # fmt: skip
async def test_7_3_close_bodies_are_answered(connect: Open, body: bytes, answer: bytes) -> None:
    client = await opened(connect)
    await client.send(frame(CLOSE, body))
    assert await client.expect_close(None if not answer else 1000) == answer


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]  # fmt: skip
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
async def test_7_7_valid_close_codes_are_echoed(
    connect: Open, jp_serverapp: Any, code: int
) -> None:
    client = await opened(connect)
    await client.send(frame(CLOSE, close_body(code, b"reason")))
    assert await client.expect_close(code) == close_body(code)
    await no_connections(jp_serverapp)
    assert sessions(jp_serverapp).shared.alive


@pytest.mark.parametrize("code", INVALID_CODES)
async def test_7_9_invalid_close_codes_are_1002(connect: Open, code: int) -> None:
    client = await opened(connect)
    await fails(client, frame(CLOSE, close_body(code)), 1002)


@pytest.mark.parametrize(
    ("body", "code"),
    [P(b"\x03", 1002, id="7.3.2-one-byte"),
     P(close_body(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 1007,
       id="7.5.1-surrogate-reason"),
     P(close_body(1000, b"cut \xe2\x82"), 1007, id="truncated-reason"),
     P(close_body(1000, b"\xff"), 1007, id="ff-reason")],
)  # fmt: skip
async def test_7_bad_close_bodies(connect: Open, body: bytes, code: int) -> None:
    client = await opened(connect)
    await fails(client, frame(CLOSE, body), code)


# ---------------------------------------------------------------------- 9 size limits


@pytest.mark.parametrize("jp_server_config", [SMALL_LIMIT], indirect=True, ids=["limit"])
@pytest.mark.parametrize(
    "head",
    [P(struct.pack("!BBH", 0x80 | TEXT, 0x80 | 126, LIMIT + 1), id="16-bit-length"),
     P(struct.pack("!BBQ", 0x80 | BINARY, 0x80 | 127, 1 << 40), id="64-bit-length"),
     P(frame(TEXT, b" " * 4000, fin=False) + struct.pack("!BBH", CONT, 0x80 | 126, 200),
       id="fragment-over-the-rest")],
)  # fmt: skip
async def test_9_an_oversize_frame_is_refused_on_its_header(connect: Open, head: bytes) -> None:
    """Fail fast: 1009 from the length alone; the server neither waits for nor buffers it."""
    client = await opened(connect)
    await client.send(head + b"mask")
    await client.expect_close(1009, FAST)


@pytest.mark.parametrize("jp_server_config", [SMALL_LIMIT], indirect=True, ids=["limit"])
async def test_9_a_message_over_the_limit_with_pings_between_fragments(connect: Open) -> None:
    client = await opened(connect)
    parts = fragments(TEXT, b" " * (LIMIT + 1), [1000, 2000, 3000])
    await client.send(parts[0], frame(PING, b"p1"), parts[1], frame(PING, b"p2"), parts[2])
    await client.expect_pong(b"p2")
    await fails(client, parts[3], 1009)


@pytest.mark.parametrize("jp_server_config", [SMALL_LIMIT], indirect=True, ids=["limit"])
async def test_9_control_frames_do_not_count_against_the_message(connect: Open) -> None:
    client = await opened(connect)
    whole = msg("stdin", "echo ctrl-limit-$((13*11))\r", pad_to=LIMIT)
    first, last = fragments(TEXT, whole, [LIMIT // 2])
    await client.send(first, *[frame(PING, b"x" * 125)] * 40, last)  # 5000 bytes of pings
    await client.expect("ctrl-limit-143")


async def test_9_a_64_bit_length_with_the_top_bit_set_is_1002(connect: Open) -> None:
    """RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0."""
    client = await opened(connect)
    await client.send(struct.pack("!BBQ", 0x80 | BINARY, 0x80 | 127, 1 << 63) + b"mask")
    await client.expect_close(1002, FAST)


# ---------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    "data",
    [P(frame(TEXT, msg("stdin", ""), mask=False), id="text"),
     P(frame(BINARY, b"", mask=False), id="empty-binary"),
     P(frame(PING, b"unmasked", mask=False), id="ping"),
     P(frame(PONG, b"", mask=False), id="pong"),
     P(frame(CLOSE, close_body(1000), mask=False), id="close"),
     P(frame(TEXT, b"[", fin=False) + frame(CONT, b"]", mask=False), id="continuation")],
)  # fmt: skip
async def test_unmasked_client_frames_are_1002(
    connect: Open, jp_serverapp: Any, data: bytes
) -> None:
    """RFC 6455 5.1: the server MUST close the connection on an unmasked frame."""
    client = await opened(connect)
    await client.send(frame(TEXT, msg("stdin", "echo masked-$((14*11))\r")))
    await client.expect("masked-154")
    await fails(client, data, 1002)
    await no_connections(jp_serverapp)
    await assert_healthy(connect, 8)


# ---------------------------------------------------------------------- ping floods


async def test_a_ping_flood_is_answered_and_the_terminal_keeps_working(connect: Open) -> None:
    client = await opened(connect)
    n = 5000
    await client.send(*[frame(PING, f"flood-{i}".encode()) for i in range(n // 2)])
    await client.send(frame(TEXT, msg("stdin", "echo amid-$((15*11))\r")))
    await client.send(*[frame(PING, f"flood-{i}".encode()) for i in range(n // 2, n)])
    await client.expect_pong(f"flood-{n - 1}".encode(), wait=30)
    assert client.pongs == [f"flood-{i}".encode() for i in range(n)]
    await client.expect("amid-165")
    await echoes(client)


async def test_a_ping_flood_from_a_client_that_does_not_read_is_bounded(
    connect: Open, jp_serverapp: Any
) -> None:
    """A client sends pings and never reads the pongs. The server must not queue every
    answer in memory: past its write buffer's high-water mark it answers only the most
    recent ping (RFC 6455 5.5.3 allows that) once the socket drains."""
    client = await opened(connect)
    (server_side,) = sessions(jp_serverapp).connections
    count = 150_000  # ~19 MB of pongs: more than the kernel's socket buffers hold
    peak = 0
    batch = 5000
    for start in range(0, count, batch):
        await client.send(
            *[frame(PING, b"%09d" % i + b"." * 116) for i in range(start, start + batch)]
        )
        await asyncio.sleep(0)
        peak = max(peak, server_side.transport.get_write_buffer_size())
    await asyncio.sleep(0.2)  # the server has read (and answered) the last of them
    peak = max(peak, server_side.transport.get_write_buffer_size())
    assert peak <= 2 * server_side._high_water, f"{peak} bytes of pongs queued"
    last = b"%09d" % (count - 1) + b"." * 116
    await client.expect_pong(last, wait=60)
    order = [int(p[:9]) for p in client.pongs]
    assert order == sorted(order) and len(set(order)) == len(order)
    await echoes(client)
