"""kaip.protocol: the inference protocols' rules that the model server and the gateway share.

Light (no numpy, no servers), so the gateway can use it without loading the model
server: reading ``/v2/models/...`` paths whose served names contain ``/``
(:mod:`~kaip.protocol.model_paths`), the table of Triton and KServe extensions kaip speaks and
its answers for the others (:mod:`~kaip.protocol.extensions`), Triton's statistics format,
counted and summed (:mod:`~kaip.protocol.statistics`), and the HTTP/1.1 client both the gateway
and the engine relay send upstream with (:mod:`~kaip.protocol.upstream`, the one module here
that does I/O: the sockets to upstreams).
"""
