"""The embedded Ray the Ray tests share per module: 4 logical CPUs (Ray's own tests oversubscribe a small
machine the same way), quiet, with short health checks and start-up timeouts."""

import pytest
import ray

RAY_TEST_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
}


def embedded_ray():
    """Generator body of a module-scoped fixture: Ray up for the module's tests, down after."""
    patch = pytest.MonkeyPatch()
    for key, value in RAY_TEST_ENV.items():
        patch.setenv(key, value)
    ray.init(address="local", num_cpus=4, object_store_memory=200 * 1024**2, configure_logging=False)
    yield
    ray.shutdown()
    patch.undo()
