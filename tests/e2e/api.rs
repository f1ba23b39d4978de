//! The public IIIF API: info.json in both versions, image requests, redirects, headers.

use crate::support::{client, image_size, Stack};
use serde_json::Value;

const VALIDATOR_ID: &str = "67352ccc-d1b0-11e1-89ae-279075081939";

async fn get(stack: &Stack, path: &str) -> reqwest::Response {
    client().get(stack.url(path)).send().await.unwrap()
}

async fn get_image(stack: &Stack, path: &str) -> (reqwest::header::HeaderMap, (u32, u32)) {
    let response = get(stack, path).await;
    assert_eq!(response.status(), 200, "{path}");
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    (headers, image_size(&body))
}

#[tokio::test]
async fn v3_info_json_is_a_level2_image_service() {
    let stack = Stack::start();
    let response = get(&stack, &format!("/iiif/3/{VALIDATOR_ID}/info.json")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\""
    );
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response.headers()["link"]
        .to_str()
        .unwrap()
        .contains("http://iiif.io/api/image/3/level2.json"));
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["@context"], "http://iiif.io/api/image/3/context.json");
    assert_eq!(info["id"], stack.url(&format!("/iiif/3/{VALIDATOR_ID}")));
    assert_eq!(info["type"], "ImageService3");
    assert_eq!(info["profile"], "level2");
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(1000), Some(1000))
    );
    let qualities = info["extraQualities"].to_string();
    assert!(!qualities.contains("native"), "{qualities}");
    for format in ["gif", "webp", "tif"] {
        assert!(info["extraFormats"].to_string().contains(format), "{info}");
    }
    assert!(
        info["extraFeatures"]
            .to_string()
            .contains("rotationArbitrary"),
        "{info}"
    );
    assert!(info.get("@id").is_none());
}

#[tokio::test]
async fn v2_info_json_has_public_id_and_no_native_quality() {
    let stack = Stack::start();
    let response = get(&stack, "/iiif/2/astronaut/info.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["@id"], stack.url("/iiif/2/astronaut"));
    assert_eq!(info["@context"], "http://iiif.io/api/image/2/context.json");
    assert_eq!(info["profile"][0], "http://iiif.io/api/image/2/level2.json");
    assert!(!info.to_string().contains("native"));
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(512), Some(512))
    );
}

#[tokio::test]
async fn info_json_content_type_follows_accept() {
    let stack = Stack::start();
    let ask = |version: &'static str, accept: &'static str| {
        let url = stack.url(&format!("/iiif/{version}/astronaut/info.json"));
        async move {
            let response = client()
                .get(url)
                .header("Accept", accept)
                .send()
                .await
                .unwrap();
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(ask("2", "application/ld+json").await, "application/ld+json");
    assert_eq!(ask("3", "application/json").await, "application/json");
    assert!(ask("3", "application/ld+json")
        .await
        .starts_with("application/ld+json"));
}

#[tokio::test]
async fn unversioned_paths_redirect_to_the_latest_or_negotiated_version() {
    let stack = Stack::start();
    let response = get(&stack, "/iiif/astronaut/info.json").await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        stack.url("/iiif/3/astronaut/info.json")
    );
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let response = client()
        .get(stack.url("/iiif/astronaut/info.json"))
        .header(
            "Accept",
            "application/ld+json;profile=\"http://iiif.io/api/image/2/context.json\"",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["location"],
        stack.url("/iiif/2/astronaut/info.json")
    );
    let response = get(&stack, "/iiif/astronaut/full/max/0/default.jpg").await;
    assert_eq!(
        response.headers()["location"],
        stack.url("/iiif/3/astronaut/full/max/0/default.jpg")
    );
}

#[tokio::test]
async fn base_uri_redirects_to_info_json_with_cors() {
    let stack = Stack::start();
    for version in ["2", "3"] {
        let response = get(&stack, &format!("/iiif/{version}/Zo%C3%AB%20caf%C3%A9")).await;
        assert_eq!(response.status(), 303);
        assert_eq!(
            response.headers()["location"],
            stack.url(&format!("/iiif/{version}/Zo%C3%AB%20caf%C3%A9/info.json"))
        );
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
    }
}

#[tokio::test]
async fn identifiers_with_spaces_non_ascii_and_slashes_work() {
    let stack = Stack::start();
    for id in ["Zo%C3%AB%20caf%C3%A9", "collection%2Fastronaut"] {
        let response = get(&stack, &format!("/iiif/3/{id}/info.json")).await;
        assert_eq!(response.status(), 200, "{id}");
        let info: Value = response.json().await.unwrap();
        assert_eq!(info["id"], stack.url(&format!("/iiif/3/{id}")));
        get_image(&stack, &format!("/iiif/3/{id}/full/64,/0/default.jpg")).await;
    }
}

#[tokio::test]
async fn sizes_are_exact_in_both_versions() {
    let stack = Stack::start();
    let cases = [
        ("/iiif/3/hubble/full/max/0/default.jpg", (1000, 872)),
        ("/iiif/3/hubble/full/333,/0/default.jpg", (333, 290)),
        ("/iiif/3/hubble/full/,100/0/default.jpg", (115, 100)),
        ("/iiif/3/hubble/full/!300,300/0/default.jpg", (300, 262)),
        ("/iiif/3/hubble/full/pct:50/0/default.jpg", (500, 436)),
        ("/iiif/3/hubble/full/^1200,/0/default.jpg", (1200, 1046)),
        ("/iiif/3/hubble/square/100,100/0/default.jpg", (100, 100)),
        ("/iiif/3/hubble/3,3,997,747/333,/0/default.jpg", (333, 249)),
        (
            "/iiif/3/hubble/900,800,300,300/max/0/default.jpg",
            (100, 72),
        ),
        (
            "/iiif/3/hubble/900,700,300,200/max/0/default.jpg",
            (100, 172),
        ),
        (
            "/iiif/3/odd-1001x777/768,512,256,256/233,/0/default.jpg",
            (233, 256),
        ),
        ("/iiif/2/hubble/full/full/0/default.jpg", (1000, 872)),
        ("/iiif/2/hubble/full/1200,/0/default.jpg", (1200, 1046)),
        ("/iiif/2/hubble/full/100,100/0/default.jpg", (100, 100)),
        ("/iiif/2/hubble/square/100,/0/default.jpg", (100, 100)),
        ("/iiif/3/hubble/full/100,50/90/default.jpg", (50, 100)),
        ("/iiif/2/hubble/full/100,50/!270/gray.jpg", (50, 100)),
    ];
    for (path, expected) in cases {
        let (_, size) = get_image(&stack, path).await;
        assert_eq!(size, expected, "{path}");
    }
}

#[tokio::test]
async fn tiles_from_a_viewer_have_their_exact_sizes() {
    let stack = Stack::start();
    // OpenSeadragon-style tiles of a 1001×777 pyramid: full tiles, edge tiles and scaled levels.
    let cases = [
        ("0,0,256,256/256,", (256, 256)),
        ("768,512,233,265/233,", (233, 265)),
        ("768,768,233,9/233,", (233, 9)),
        ("0,0,512,512/256,", (256, 256)),
        ("512,512,489,265/245,", (245, 133)),
        ("0,0,1001,777/251,", (251, 195)),
    ];
    for (region_size, expected) in cases {
        for version in ["2", "3"] {
            let path = format!("/iiif/{version}/odd-1001x777/{region_size}/0/default.jpg");
            let (_, size) = get_image(&stack, &path).await;
            assert_eq!(size, expected, "{path}");
        }
    }
}

#[tokio::test]
async fn every_advertised_format_is_produced() {
    let stack = Stack::start();
    let cases = [
        ("png", "image/png"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("tif", "image/tiff"),
        ("jpg", "image/jpeg"),
    ];
    for (extension, mime) in cases {
        let path = format!("/iiif/3/astronaut/full/200,/0/default.{extension}");
        let (headers, size) = get_image(&stack, &path).await;
        assert_eq!(headers["content-type"], mime, "{path}");
        assert_eq!(size, (200, 200), "{path}");
    }
    let response = get(&stack, "/iiif/3/astronaut/full/200,/0/default.jp2").await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn arbitrary_rotation_returns_the_bounding_box() {
    let stack = Stack::start();
    let (_, size) = get_image(&stack, "/iiif/3/hubble/full/200,100/45/default.png").await;
    // 200×100 rotated by 45°: (200+100)·cos 45° ≈ 212.1 on both sides.
    assert!(
        (212..=213).contains(&size.0) && (212..=213).contains(&size.1),
        "{size:?}"
    );
    let (_, size) = get_image(&stack, "/iiif/2/hubble/full/200,100/!22.5/default.jpg").await;
    assert!(size.0 > 200 && size.1 > 100, "{size:?}");
}

#[tokio::test]
async fn qualities_produce_gray_and_bitonal_pixels() {
    let stack = Stack::start();
    let body = get(&stack, "/iiif/3/astronaut/full/128,/0/bitonal.png")
        .await
        .bytes()
        .await
        .unwrap();
    let image = image::load_from_memory(&body).unwrap().to_luma8();
    assert!(image.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    // A bitonal tile is where iipsrv 1.1 crashes or returns raw bytes on its tile path.
    let response = get(&stack, "/iiif/2/astronaut/0,0,256,256/256,/0/bitonal.jpg").await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(image_size(&body), (256, 256));
    let gray = get(&stack, "/iiif/3/astronaut/full/64,/0/gray.png")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        image::load_from_memory(&gray).unwrap().color(),
        image::ColorType::L8
    );
}

#[tokio::test]
async fn image_responses_carry_cors_link_and_caching_headers() {
    let stack = Stack::start();
    let response = get(&stack, "/iiif/3/astronaut/0,0,256,256/256,/0/default.jpg").await;
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    assert!(headers.contains_key("last-modified"));
    assert!(headers.contains_key("content-length"));
    let link = headers["link"].to_str().unwrap();
    assert!(link.contains("rel=\"profile\""), "{link}");
    assert!(
        link.contains(&format!(
            "<{}>;rel=\"canonical\"",
            stack.url("/iiif/3/astronaut/0,0,256,256/max/0/default.jpg")
        )),
        "{link}"
    );
}

#[tokio::test]
async fn head_and_options_are_answered() {
    let stack = Stack::start();
    let image = stack.url("/iiif/3/astronaut/full/64,/0/default.jpg");
    // Before the image is rendered, HEAD does no pixel work: the headers without a length.
    let response = client().head(&image).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert!(response.headers().get("content-length").is_none());
    let etag = response.headers()["etag"].clone();
    let get = client().get(&image).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(
        get.headers()["etag"],
        etag,
        "HEAD and GET name the same entity"
    );
    assert!(!get.bytes().await.unwrap().is_empty());
    let response = client()
        .request(
            reqwest::Method::OPTIONS,
            stack.url("/iiif/3/astronaut/info.json"),
        )
        .header("Origin", "https://viewer.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "X-Requested-With")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        response.headers()["access-control-allow-headers"],
        "X-Requested-With"
    );
    let response = client()
        .post(stack.url("/iiif/3/astronaut/info.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn errors_follow_the_spec() {
    let stack = Stack::start();
    let cases = [
        ("/iiif/3/astronaut/full/full/0/default.jpg", 400),
        ("/iiif/3/astronaut/full/1000,/0/default.jpg", 400),
        ("/iiif/3/astronaut/full/!2000,3000/0/default.jpg", 400),
        ("/iiif/3/astronaut/full/pct:200/0/default.jpg", 400),
        ("/iiif/2/astronaut/full/^max/0/default.jpg", 400),
        ("/iiif/3/astronaut/0,0,0,0/max/0/default.jpg", 400),
        ("/iiif/3/astronaut/abc/max/0/default.jpg", 400),
        ("/iiif/3/astronaut/full/max/361/default.jpg", 400),
        ("/iiif/3/astronaut/full/max/0/native.jpg", 400),
        ("/iiif/3/astronaut/full/max/0/default.bmp", 400),
        ("/iiif/3/astronaut/full/6000,/0/default.jpg", 400),
        ("/iiif/3/no-such-image/info.json", 404),
        ("/iiif/3/no-such-image/full/max/0/default.jpg", 404),
        ("/iiif/3/a/b/full/max/0/default.jpg", 404),
        ("/not-iiif", 404),
    ];
    for (path, status) in cases {
        let response = get(&stack, path).await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "{path}"
        );
        let body = response.text().await.unwrap();
        assert!(!body.is_empty() && body.len() < 300, "{path}: {body}");
    }
}
