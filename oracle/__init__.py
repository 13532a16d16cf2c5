"""libbpf-sec-oracle: a model of libbpf's custom SEC() handler registry, and harnesses around it."""
