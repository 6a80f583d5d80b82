"""The cross-site rules of a public app, header by header (garden.services.web)."""

from __future__ import annotations

from garden.services.web import cross_site

HOSTS = ["127.0.0.1", "localhost", "me.hf.space", ".gradio.live"]


def headers(**values: str) -> dict[bytes, str]:
    return {key.replace("_", "-").encode(): value for key, value in values.items()}


def test_opening_the_app_from_another_site_is_a_navigation_and_passes() -> None:
    framed = headers(
        host="me.hf.space", sec_fetch_site="cross-site", sec_fetch_mode="navigate"
    )  # the Space page's iframe, or a link on another site
    assert not cross_site(framed, HOSTS, "GET")
    assert cross_site(framed, HOSTS, "POST"), "a cross-site form post is still refused"


def test_another_sites_fetch_is_refused() -> None:
    fetch = headers(
        host="me.hf.space",
        origin="https://evil.example",
        sec_fetch_site="cross-site",
        sec_fetch_mode="cors",
    )
    assert cross_site(fetch, HOSTS, "GET")
    assert cross_site(headers(host="me.hf.space", origin="null"), HOSTS, "POST")


def test_another_share_link_is_not_this_apps_origin() -> None:
    other_share = headers(host="abc.gradio.live", origin="https://xyz.gradio.live")
    assert cross_site(other_share, HOSTS, "POST")
    same = headers(host="abc.gradio.live", origin="https://abc.gradio.live")
    assert not cross_site(same, HOSTS, "POST")
