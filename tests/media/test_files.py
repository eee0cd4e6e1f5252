"""service.files as uploads and mirroring use it, and how mirroring finds and names files."""

from __future__ import annotations

import pytest

from service.catalog import IMAGE_FILE, VIDEO_FILE
from service.files import FileProblem, decode_data_uri, sniff, upload_problem
from service.media import check_key
from tests.catalog.media import JPEG, PNG, TEXT, WEBM, WEBP, data_uri, mp4
from workers.mirror import OutputFile, output_files


@pytest.mark.parametrize(
    ("data", "declared", "spec", "media_type"),
    [
        (JPEG, "image/jpeg", IMAGE_FILE, "image/jpeg"),
        (JPEG, "image/jpg", IMAGE_FILE, "image/jpeg"),
        (PNG, None, IMAGE_FILE, "image/png"),
        (WEBP, "application/octet-stream", IMAGE_FILE, "image/webp"),
        (PNG, "image/jpeg", IMAGE_FILE, "image/png"),  # mislabelled but acceptable, as data URIs
        (mp4(4.0), "video/mp4", VIDEO_FILE, "video/mp4"),
        (WEBM, None, VIDEO_FILE, "video/webm"),
    ],
)
def test_an_upload_is_classified_by_its_bytes(
    data: bytes, declared: str | None, spec: object, media_type: str
) -> None:
    assert upload_problem(data, declared, "The upload") == (spec, media_type)


def test_an_upload_problem_names_what_the_bytes_are() -> None:
    problem = upload_problem(b"%PDF-1.7 ...", "application/pdf", "The upload")
    assert isinstance(problem, FileProblem)
    assert problem.type == "unsupported_media_type"
    assert problem.ctx is not None and problem.ctx["detected"] == "application/pdf"
    assert problem.msg.startswith("The upload")
    text = upload_problem(TEXT, None, "The upload")
    assert isinstance(text, FileProblem) and text.ctx and text.ctx["detected"] is None


def test_a_video_labelled_as_an_image_is_refused() -> None:
    problem = upload_problem(mp4(4.0), "image/png", "The upload")
    assert isinstance(problem, FileProblem) and problem.type == "unsupported_media_type"


def test_a_data_uri_decodes_to_its_media_type_and_bytes() -> None:
    assert decode_data_uri(data_uri("image/JPG", JPEG)) == ("image/jpeg", JPEG)
    assert sniff(JPEG) == "image/jpeg"


def test_output_files_are_found_wherever_fal_puts_them_and_named_by_their_path() -> None:
    result = {
        "video": {"url": "https://v3.fal.media/files/a/out.mp4", "content_type": "video/mp4",
                  "file_size": 123},
        "images": [{"url": "https://v3.fal.media/x.png"}, {"url": "data:image/png;base64,AA=="}],
        "seed": 42,
        "nested": {"thumb": {"url": "http://cdn.example/t.webp", "file_size": "12"}},
        "url": "https://not-a-file-object.example/",
    }  # fmt: skip
    assert output_files(result) == [
        OutputFile("video", "https://v3.fal.media/files/a/out.mp4", "video/mp4", 123),
        OutputFile("images_0", "https://v3.fal.media/x.png", None, None),
        OutputFile("nested_thumb", "http://cdn.example/t.webp", None, None),
    ]
    assert output_files(None) == [] and output_files({"video": "just a string"}) == []
    assert output_files({"we/ird key!": {"url": "https://a.example/f"}})[0].kind == "we_ird_key_"


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "jobs/../../x.mp4", "/abs/x.mp4", "jobs//x.mp4", "x", "a/b.c.d"]
)
def test_media_keys_outside_vidhooks_own_shape_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)
    assert check_key("jobs/job_1/video.mp4") == "jobs/job_1/video.mp4"
