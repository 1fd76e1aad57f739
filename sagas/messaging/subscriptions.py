"""Who wants each event: the engine's own publishers, and the apps' subscriptions.

Two kinds of taker, both looked up by topic:

- a *route* turns an engine event into the broker messages that do its work (a
  dispatch of an orchestrated saga becomes its Celery chain);
- a *subscription* delivers an app's event to a reaction of another app: one task
  message per subscriber, on the consumer's own queue, as a durable queue per
  subscriber is what at-least-once needs (Redis fanout is not durable). A
  subscription may want only the events of sagas of one mode.

An event that nobody takes is not written (sagas.messaging.outbox).
"""

from collections.abc import Callable
from dataclasses import dataclass

Publisher = Callable[..., None]  # (message, producer, **publish_options)


@dataclass(frozen=True)
class Subscription:
    consumer: str  # the reaction whose app's inbox records what it received
    topic: str
    task_name: str  # the Celery task that receives it
    queue: str
    mode: str | None = None  # only events of sagas of this mode; None: all

    def wants(self, headers: dict) -> bool:
        return self.mode is None or headers.get("mode") == self.mode


_routes: dict[str, Publisher] = {}
_subscriptions: dict[str, list[Subscription]] = {}


def route(*topics: str) -> Callable[[Publisher], Publisher]:
    """Register how engine events of ``topics`` reach the broker."""

    def register(publisher: Publisher) -> Publisher:
        for topic in topics:
            _routes[topic] = publisher
        return publisher

    return register


def subscribe(subscription: Subscription) -> None:
    taken = _subscriptions.setdefault(subscription.topic, [])
    if subscription not in taken:
        taken.append(subscription)


def publisher(topic: str) -> Publisher | None:
    return _routes.get(topic)


def subscribers(topic: str, headers: dict) -> list[Subscription]:
    return [s for s in _subscriptions.get(topic, ()) if s.wants(headers)]


def wanted(topic: str, headers: dict) -> bool:
    """Does anyone take this event? If not, it needs no relay and no broker."""
    return topic in _routes or bool(subscribers(topic, headers))


def subscribed_topics() -> set[str]:
    return set(_subscriptions)


def all_subscriptions() -> list[Subscription]:
    return [s for taken in _subscriptions.values() for s in taken]
