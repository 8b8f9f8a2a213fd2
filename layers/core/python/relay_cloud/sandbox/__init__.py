"""Sandbox upstreams for the local stack: fakes of the third-party APIs we call, following their
documented paths and fields. They live apart from production code, are mounted only by the local
stack under ``/_sandbox/<name>/`` and only when local configuration asks for them (SPEC §5).
"""
