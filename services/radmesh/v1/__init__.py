"""Generated from proto/radmesh/v1 by scripts/gen_protos.py. Do not edit."""
