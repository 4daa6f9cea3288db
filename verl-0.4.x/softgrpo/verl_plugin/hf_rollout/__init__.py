"""The ``hf_soft`` rollout: the reference ``SoftThinkingEngine`` behind verl's rollout interfaces (CPU CI).

* :mod:`.server` -- ``HFSoftServer``, a Ray actor serving verl's token-in/token-out ``generate``;
* :mod:`.replica` -- ``HFSoftReplica(RolloutReplica)``, one server per replica;
* :mod:`.adapter` -- ``HFSoftServerAdapter(BaseRollout)`` in each trainer worker: weight sync.

Registered by name in :mod:`softgrpo.verl_plugin.registration`; nothing here is imported by the
plug-in's entry point.
"""

SERVER_NAME_PREFIX = "hf_soft_server_"


def server_actor_name(replica_rank: int) -> str:
    """The Ray name of replica ``replica_rank``'s server (the adapter finds it by this name)."""
    return f"{SERVER_NAME_PREFIX}{replica_rank}"
