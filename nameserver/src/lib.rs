//! `tern-nameserver`: the stateless route registry.
