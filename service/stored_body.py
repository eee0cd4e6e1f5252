"""A callback body as a delivery stores it: zlib with a preset dictionary, versioned.

Every retry and redelivery sends the body the first attempt built, byte for byte, so the
delivery keeps it for as long as it lives. A body is ~0.8-1.3 KB of JSON, mostly the keys and
fixed words of the job resource; plain zlib halves it, zlib primed with a dictionary of that
shared JSON (`ZDICT_V1`) leaves about a quarter. That keeps it under the 512 bytes of
`hash-max-ziplist-value` (deploy/redis.conf), so the delivery's hash stays one compact
listpack.

A stored body can only be read with the dictionary it was written with, so the dictionary is
frozen: its version is in the field's name (`body_z1`), a test pins its bytes, and a better
one would be `ZDICT_V2` in a field `body_z2`, with `body_z1` still read. zlib's own header
names the dictionary (its Adler-32) and its trailer checks the bytes it gives back, so a
wrong dictionary fails loudly instead of sending other bytes. Deliveries written before
compression keep their body plain in `body`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

BODY_FIELD = "body_z1"
LEGACY_BODY_FIELD = "body"

# What callback bodies share (service/jobs.py `Job.to_resource`, workers/notify.py
# `payload_for`, service/fal_view.py `webhook_payload`), rarest first: deflate reaches the
# end of its dictionary with the shortest distances. Never edit: see the module docstring.
ZDICT_V1 = "".join(
    (
        '{"request_id":"job_","gateway_request_id":"job_","status":"ERROR","error":"Invalid '
        'status code: 422","payload":{"detail":[{"loc":["body","prompt"],"msg":"","type":"'
        'value_error"}]}}{"request_id":"job_","gateway_request_id":"job_","status":"OK",'
        '"payload":{"video":{"url":"https://v3.fal.media/files/',
        '"endpoint":"fal-ai/veo2/image-to-video","endpoint":"fal-ai/veo3.1/reference-to-video",'
        '"endpoint":"fal-ai/veo3.1/fast/extend-video","endpoint":"fal-ai/veo3.1/extend-video",'
        '"endpoint":"fal-ai/veo3.1/fast/first-last-frame-to-video",'
        '"endpoint":"fal-ai/veo3.1/first-last-frame-to-video",'
        '"endpoint":"fal-ai/veo3.1/fast/image-to-video",',
        '"status":"submitted","status":"in_progress","status":"failed","status":"cancelled",',
        '"error":{"type":"fal_request_failed","message":"","errors":[],"fal_detail":[]},'
        '"error":{"type":"deadline_exceeded","message":""},"error":{"type":"dispatch_failed",'
        '"message":""},"mirror":,"superseded":{"status":"failed","error":',
        '{"type":"job.submitted","timestamp":null,"data":{',
        '{"type":"job.in_progress","timestamp":"2026-01-01T00:00:00.000Z","data":{',
        '{"type":"job.failed","timestamp":"2026-01-01T00:00:00.000Z","data":{',
        '{"type":"job.cancelled","timestamp":"2026-01-01T00:00:00.000Z","data":{',
        '"assets":[{"kind":"video","source_url":"https://v3.fal.media/files/","url":"https://",'
        '"key":"","bytes":,"sha256":"","content_type":"video/mp4"}],',
        '{"type":"job.completed","timestamp":"2026-01-01T00:00:00.000Z","data":{"id":"job_",'
        '"object":"job","status":"completed","endpoint":"fal-ai/veo3.1/image-to-video",'
        '"created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z",'
        '"submitted_at":"2026-01-01T00:00:00.000Z","completed_at":"2026-01-01T00:00:00.000Z",'
        '"cancel_requested_at":null,"fal_request_id":"","submissions":{"attempts":1,'
        '"resubmits":0},"estimated_cost_usd":,"metadata":null,"result":{"video":{"url":"'
        'https://v3.fal.media/files/_output.mp4","content_type":"video/mp4","file_name":"'
        'output.mp4","file_size":}},"error":null,"assets":[],"links":{"self":"/v1/jobs/job_',
    )
).encode()


def compress(body: bytes) -> bytes:
    """`body` as `BODY_FIELD` holds it."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, ZDICT_V1)
    return packer.compress(body) + packer.flush()


def body_of(fields: Mapping[str, bytes]) -> bytes:
    """The exact body a delivery's hash stores, in whichever form it was written.

    Raises:
        zlib.error: the stored bytes do not give back a body (corrupt, or another dictionary).
    """
    packed = fields.get(BODY_FIELD)
    if packed is None:
        return fields.get(LEGACY_BODY_FIELD, b"")
    unpacker = zlib.decompressobj(15, ZDICT_V1)
    body = unpacker.decompress(packed) + unpacker.flush()
    if not unpacker.eof:
        raise zlib.error("the stored callback body is truncated")
    return body
