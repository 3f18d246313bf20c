import pytest

from builder.measure.sse import SSEError, StreamEvent, is_token, parse_sse_line, summarize_stream


def test_data_lines_with_and_without_space_and_line_ends():
    for line in ('data: {"choices": [{"text": "hi"}]}\n', 'data:{"choices":[{"text":"hi"}]}\r\n'):
        ev = parse_sse_line(line)
        assert ev == StreamEvent(kind="token", text="hi")


def test_lines_without_events():
    for line in ("", "\n", ": keep-alive", "event: message", "id: 7", "retry: 100"):
        assert parse_sse_line(line) is None


def test_done_usage_and_finish_reason():
    assert parse_sse_line("data: [DONE]").kind == "done"
    usage = parse_sse_line('data: {"choices": [], "usage": {"completion_tokens": 12}}')
    assert usage == StreamEvent(kind="usage", completion_tokens=12)
    last = parse_sse_line('data: {"choices": [{"text": "", "finish_reason": "length"}], '
                          '"usage": {"completion_tokens": 3}}')
    assert last.kind == "token" and last.finish_reason == "length" and last.completion_tokens == 3
    assert not is_token(last)  # empty closing chunk
    assert is_token(StreamEvent(kind="token", text=""))  # held-back bytes: still a step


def test_chat_delta_text():
    assert parse_sse_line('data: {"choices": [{"delta": {"content": "x"}}]}').text == "x"


@pytest.mark.parametrize("line, why", [
    ("data: {not json", "not JSON"),
    ("data: [1, 2]", "not a JSON object"),
    ('data: {"error": {"message": "CUDA out of memory"}}', "CUDA out of memory"),
    ('data: {"id": 1}', "choices"),
    ('data: {"choices": []}', "neither choices nor usage"),
    ('data: {"choices": [], "usage": {"completion_tokens": "7"}}', "not an integer"),
])
def test_malformed_lines_raise(line, why):
    with pytest.raises(SSEError, match=why):
        parse_sse_line(line)


def _tok(text=" a"):
    return StreamEvent(kind="token", text=text)


def test_summarize_counts_chunks_and_times():
    events = [(10.5, _tok()), (10.6, _tok()), (10.7, _tok()), (10.9, _tok())]
    r = summarize_stream(events, t_sent=10.0)
    assert r.status == "ok" and r.tokens == 4 and r.token_source == "chunks" and r.chunks == 4
    assert r.ttft_s == pytest.approx(0.5)
    assert r.itls_s == pytest.approx((0.1, 0.1, 0.2))
    assert r.decode_tokens == 3 and r.decode_tps == pytest.approx(3 / 0.4)


def test_summarize_prefers_usage_and_ignores_closing_chunk():
    events = [(1.0, _tok()), (1.1, _tok()), (1.2, StreamEvent(kind="token", text="", finish_reason="length")),
              (1.3, StreamEvent(kind="usage", completion_tokens=5))]
    r = summarize_stream(events, t_sent=0.5)
    assert r.tokens == 5 and r.token_source == "usage" and r.chunks == 2
    assert r.t_last == 1.1 and r.decode_tps == pytest.approx(4 / 0.1)


def test_summarize_without_tokens_is_an_error():
    r = summarize_stream([(1.0, StreamEvent(kind="usage", completion_tokens=0))], t_sent=0.0)
    assert r.status == "error" and "no token" in r.error and r.decode_tps is None
