"""The tests' Spark standalone cluster on loopback is the benchmark's (bench/cluster.py): one
starter for both, the benchmark's harness being in the checkout beside the tests."""

from bench.cluster import StandaloneCluster, start_cluster

__all__ = ["StandaloneCluster", "start_cluster"]
