"""The segmentation service: core (pure), Triton runner, gRPC server and client."""
