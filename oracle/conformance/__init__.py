"""Conformance tests shipped in the package: ``pytest --pyargs oracle.conformance --libbpf T``.

They need only the installed package (its recorded corpora are package data,
``oracle.shipped``) and the target; the repository's own test suite runs the
same module (tests/differential/test_conformance.py imports it).
"""
