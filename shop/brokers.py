"""Broker connection options by transport: every call bounded, confirms on RabbitMQ.

A broker that stops answering (a frozen process, a black-holed connection) must fail a
call after a bounded time, never hang it: Redis gets socket timeouts, RabbitMQ a
connect timeout, heartbeats and publisher confirms (a publish returns only once the
broker has taken the message; the relay marks a row published only then).
"""


def scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0].lower()


def is_redis(url: str) -> bool:
    return scheme(url) in ("redis", "rediss")


def is_amqp(url: str) -> bool:
    return scheme(url) in ("amqp", "amqps", "pyamqp")


def transport_options(
    url: str, *, timeout: float, visibility_timeout: int, keyprefix: str = ""
) -> dict:
    if is_redis(url):
        return {
            # A message a worker took but never acknowledged comes back after this
            # long (checked against the step deadlines by sagas.checks).
            "visibility_timeout": visibility_timeout,
            # Lets tests and several checkouts share one Redis without seeing each
            # other's queues.
            "global_keyprefix": keyprefix,
            **socket_timeouts(url, timeout=timeout),
        }
    if is_amqp(url):
        return {"confirm_publish": True, **socket_timeouts(url, timeout=timeout)}
    return {}


def socket_timeouts(url: str, *, timeout: float) -> dict:
    """Transport options that bound each blocking socket call: a publish, and the
    wait for its confirmation on RabbitMQ. (A worker's consumer reads without
    blocking; heartbeats find a dead RabbitMQ connection, CELERY_BROKER_HEARTBEAT.)"""
    if is_redis(url):
        return {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if is_amqp(url):
        return {"read_timeout": timeout, "write_timeout": timeout}
    return {}


def release_prefetch_slot_on_failed_ack() -> None:
    """Let a worker go on consuming after an acknowledgement its Redis did not take.

    kombu's Redis QoS frees a message's prefetch slot only once Redis confirmed the
    acknowledgement. When the broker times out (hung, or restarting), each failed ack
    keeps its slot for good: with prefetch 1 per process, a worker that failed as many
    acks as it has processes never fetches again, silently (celery/celery#2415). The
    slot is the worker's own bookkeeping: free it whatever Redis answered. The message
    stays in Redis's unacknowledged set and comes back after the visibility timeout,
    a duplicate the saga engine ignores.
    """
    from kombu.transport import redis, virtual

    if getattr(redis.QoS.ack, "releases_slot", False):
        return

    def ack(self, delivery_tag):
        try:
            self._remove_from_indices(delivery_tag).execute()
        finally:
            virtual.QoS.ack(self, delivery_tag)

    ack.releases_slot = True
    redis.QoS.ack = ack


def reuse_redis_clients() -> None:
    """Make one redis-py client per channel and connection pool, not one per command.

    kombu's Redis channel builds a new client for every publish and every
    acknowledgement (Channel.conn_or_acquire), and redis-py 8 fills a table of about
    200 response callbacks for each: 7 % of a solo worker's Python time in the bench.
    A client is only a view of its pool (each command takes a connection from the pool
    and gives it back, so one client serves every thread), and a new pool (after a
    fork or a lost connection) gets a new client.
    """
    from kombu.transport import redis

    create = redis.Channel._create_client
    if getattr(create, "reuses", False):
        return

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the event loop's own, made once per channel by kombu
            return create(self, asynchronous=True)
        pool = self.pool
        made = self.__dict__.get("_client_of_pool")
        if made is None or made[0] is not pool:
            made = self.__dict__["_client_of_pool"] = (pool, create(self))
        return made[1]

    _create_client.reuses = True
    redis.Channel._create_client = _create_client
