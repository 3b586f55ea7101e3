"""NVIDIA Triton Inference Server serving radmesh's model repository (``model_repository/``)."""
