"""What sidemux does with etcd's answers that speak of the leader (cluster.kind: etcd).

A real etcd gives these answers only inside a leadership transfer, a window of a
few milliseconds that no test can hit on purpose, so the members here are small
grpcio servers that give them on demand: etcd's Maintenance/Status (the health
check, naming a leader) and a KV/Put whose answer each test sets.

- "etcdserver: not leader" starts a Status round at once, not at the next interval.
  etcd gives it with FAILED_PRECONDITION (rpctypes.ErrGRPCNotLeader); through its
  grpc-gateway it is a 412 with that code in the JSON, as etcd 3.4 answered a
  MoveLeader (POST /v3/maintenance/transfer-leadership) sent to a follower here:
  {"error":"etcdserver: not leader","message":"etcdserver: not leader","code":9}.
- "raft proposal dropped" (raft refused the Put: nothing was applied) is tried on
  another member, and the client gets that member's answer.
- Any other failure of a Put that reached a member is passed on, never replayed.
- The grpc-gateway's "not leader" (HTTP/1) starts a Status round too.
"""

import threading
import time
from concurrent import futures

import grpc
import pytest

from conftest import HOST, http_request, wait_members_up
from test_http1_forward import Http1Member

INTERVAL_S = 10  # long: a Status call seen soon after a Put is the immediate round


def raw(b):
    return b


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def status_response(member_id, leader_id):
    """etcdserverpb.StatusResponse{header{member_id}, leader, raftTerm: 2}, hand-encoded."""
    header = b"\x10" + varint(member_id)  # ResponseHeader.member_id = 2
    return b"\x0a" + varint(len(header)) + header + b"\x20" + varint(leader_id) + b"\x30\x02"


class FakeEtcdMember:
    """Status names `leader_id`; Put answers with `put_answer` (None: OK, else (code, message))."""

    def __init__(self, member_id, leader_id, put_answer=None):
        self.lock = threading.Lock()
        self.status_calls = []
        self.puts = 0
        self.put_answer = put_answer

        def status(request, context):
            with self.lock:
                self.status_calls.append(time.monotonic())
            return status_response(member_id, leader_id)

        def put(request, context):
            with self.lock:
                self.puts += 1
            if self.put_answer is not None:
                context.abort(*self.put_answer)
            return b""  # PutResponse{}

        def unary(fn):
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=raw, response_serializer=raw)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("etcdserverpb.Maintenance", {"Status": unary(status)}),
            grpc.method_handlers_generic_handler("etcdserverpb.KV", {"Put": unary(put)}),
        ))
        self.port = self.server.add_insecure_port(f"{HOST}:0")
        self.server.start()

    def status_count(self):
        with self.lock:
            return len(self.status_calls)

    def stop(self):
        self.server.stop(0)


class GatewayEtcdMember(Http1Member):
    """etcd through both doors of its one port: Maintenance/Status over HTTP/2
    names it leader (each call timed, as FakeEtcdMember's), and every
    grpc-gateway request over HTTP/1 gets the answer etcd gives when the
    member that took it is not the leader."""

    NOT_LEADER = b'{"error":"etcdserver: not leader","message":"etcdserver: not leader","code":9}'

    def __init__(self):
        self.status_calls = []
        super().__init__()

    def _health_answer(self):
        with self.lock:
            self.status_calls.append(time.monotonic())
        return status_response(1, 1)

    def _http1_answer(self, line, headers, received):
        return b"412 Precondition Failed", self.NOT_LEADER

    def status_count(self):
        with self.lock:
            return len(self.status_calls)

    @property
    def port(self):
        return self.sock.getsockname()[1]


@pytest.fixture
def fake_members():
    started = []

    def make(*args, **kwargs):
        m = FakeEtcdMember(*args, **kwargs)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


def front(sidemux_factory, members):
    sm = sidemux_factory({
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "workers": 1,
        "cluster": {
            "kind": "etcd",
            "members": [{"name": f"m{i + 1}", "address": f"{HOST}:{m.port}"} for i, m in enumerate(members)],
            "health_check": {"interval": f"{INTERVAL_S}s", "timeout": "1s",
                             "unhealthy_threshold": 1, "healthy_threshold": 1},
        },
    })
    wait_members_up(sm, [f"m{i + 1}" for i in range(len(members))], 10)
    return sm


def put(sm):
    with grpc.insecure_channel(f"{HOST}:{sm.port}") as ch:
        call = ch.unary_unary("/etcdserverpb.KV/Put", request_serializer=raw, response_deserializer=raw)
        return call(b"\x0a\x01k\x12\x01v", timeout=5)


def assert_status_round_follows(member, before, first_round):
    """A Status call on `member` after its `before` calls, soon: within 3 s, well
    before the round the interval would bring after `first_round`."""
    deadline = time.monotonic() + 3
    while member.status_count() == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert member.status_count() > before, "no Status round within 3 s of etcd's \"not leader\""
    assert member.status_calls[before] < first_round + INTERVAL_S - 2


def test_not_leader_starts_a_status_round_at_once(sidemux_factory, fake_members):
    m1 = fake_members(1, 1, put_answer=(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: not leader"))
    sm = front(sidemux_factory, [m1])
    before = m1.status_count()
    first_round = m1.status_calls[0]
    with pytest.raises(grpc.RpcError) as err:
        put(sm)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # passed on as it came
    assert_status_round_follows(m1, before, first_round)


def test_gateway_not_leader_starts_a_status_round_at_once(sidemux_factory):
    m1 = GatewayEtcdMember()
    try:
        sm = front(sidemux_factory, [m1])
        before = m1.status_count()
        first_round = m1.status_calls[0]
        r = http_request(sm.port, "/v3/kv/range", "POST", body=b'{"key":"aw=="}')
        assert (r.status, r.body) == (412, GatewayEtcdMember.NOT_LEADER)
        assert_status_round_follows(m1, before, first_round)
    finally:
        m1.close()


def test_dropped_proposal_is_tried_on_another_member(sidemux_factory, fake_members):
    # m1 is the leader (both say so), so the Put goes to m1 first.
    m1 = fake_members(1, 1, put_answer=(grpc.StatusCode.UNKNOWN, "raft proposal dropped"))
    m2 = fake_members(2, 1)
    sm = front(sidemux_factory, [m1, m2])
    assert put(sm) == b""
    assert (m1.puts, m2.puts) == (1, 1)
    assert sm.metrics().value("sidemux_upstream_retries_total", member="m1", reason="proposal_dropped") == 1


def test_other_failures_of_a_put_are_not_replayed(sidemux_factory, fake_members):
    m1 = fake_members(1, 1, put_answer=(grpc.StatusCode.UNKNOWN, "etcdserver: request timed out"))
    m2 = fake_members(2, 1)
    sm = front(sidemux_factory, [m1, m2])
    with pytest.raises(grpc.RpcError) as err:
        put(sm)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNKNOWN, "etcdserver: request timed out")
    assert (m1.puts, m2.puts) == (1, 0)
