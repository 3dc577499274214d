"""One way to reach the broker's Redis: a Redis URL, or Sentinel (``sentinel://…`` + the master's name)."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from bridge import broker
from bridge.dispatch import celery_config
from bridge.errors import ConfigError
from bridge.settings import Settings


def test_a_sentinel_url_names_every_sentinel_the_database_and_the_masters_password():
    address = broker.parse_sentinel("sentinel://:s3cret@10.0.0.5:26379/2;sentinel://10.0.0.6:26380")
    assert address.sentinels == (("10.0.0.5", 26379), ("10.0.0.6", 26380))
    assert (address.db, address.password, address.username) == (2, "s3cret", None)
    assert broker.parse_sentinel("sentinel://h:1").db == 0


@pytest.mark.parametrize("url", ["sentinel://h", "sentinel://:pw@h:notaport", "sentinel://h:1;redis://h:2",
                                 "sentinel://h:1/x"])
def test_a_bad_sentinel_url_says_which_part_and_never_the_password(url):
    with pytest.raises(ConfigError) as caught:
        broker.parse_sentinel(url)
    assert "pw" not in str(caught.value)


def test_settings_require_the_master_name_with_sentinel_and_refuse_it_without():
    env = {"BRIDGE_BROKER_URL": "sentinel://10.0.0.5:26379;sentinel://10.0.0.6:26379"}
    with pytest.raises(ConfigError, match="set BRIDGE_SENTINEL_MASTER"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "BRIDGE_SENTINEL_MASTER": "bridge", "BRIDGE_SENTINEL_PASSWORD": "s3nt-pw"})
    assert settings.sentinel_master == "bridge" and "s3nt-pw" not in repr(settings)
    with pytest.raises(ConfigError, match="not a sentinel:// URL"):
        Settings.from_env({"BRIDGE_SENTINEL_MASTER": "bridge"})
    with pytest.raises(ConfigError, match="is not sentinel://HOST:PORT"):
        Settings.from_env({"BRIDGE_BROKER_URL": "sentinel://:pw@nohost", "BRIDGE_SENTINEL_MASTER": "m"})
    with pytest.raises(ConfigError, match="must be a Redis URL"):
        Settings.from_env({"BRIDGE_BROKER_URL": "amqp://guest:pw@rabbit//"})


def test_celery_and_every_redis_client_go_through_sentinel():
    settings = Settings(broker_url="sentinel://:mpw@127.0.0.1:26379/3", sentinel_master="bridge",
                        sentinel_password="spw")
    options = celery_config(settings)["broker_transport_options"]
    assert options["master_name"] == "bridge" and options["sentinel_kwargs"] == {"password": "spw"}
    assert options["visibility_timeout"] == settings.visibility_timeout  # the bridge's own options stay
    client = broker.client(settings, connect_timeout=1, timeout=2)  # nothing connects until a command
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "bridge"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "mpw"
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert (sentinel["host"], sentinel["port"], sentinel["password"]) == ("127.0.0.1", 26379, "spw")


def test_a_plain_redis_url_is_used_as_it_is():
    settings = Settings(broker_url="redis://127.0.0.1:6390/4")
    assert broker.transport_options(settings) == {}
    kwargs = broker.client(settings, connect_timeout=1, timeout=2).connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (6390, 4, 2)
