"""Deduplication stages. All share one keep policy (policy.py) and one output contract:
dropped rows carry drop_detail = {duplicate_of, method, similarity, ...}."""
