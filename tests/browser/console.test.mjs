// The admin console in a real headless Chromium, against a real gateway, Redis and iipsrv
// (tests/browser/run starts them): sign in, edit a redirect and see the public listener answer
// 301, import a CSV with a dry run then apply it, purge an image, open the viewer through v3
// and v2 with every tile 200 and CORS allowed. Screenshots go to $ARTIFACTS.
import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const ADMIN = env("ADMIN_URL").replace(/\/$/, "");
const PUBLIC = env("PUBLIC_URL").replace(/\/$/, "");
const TOKEN = env("ADMIN_TOKEN");
const ARTIFACTS = env("ARTIFACTS");
mkdirSync(ARTIFACTS, { recursive: true });

let step = 0;
async function shot(page, name) {
  step += 1;
  await page.screenshot({ path: join(ARTIFACTS, `${String(step).padStart(2, "0")}-${name}.png`), fullPage: true });
}
function log(message) {
  console.log(`browser: ${message}`);
}
/** The public listener's answer to `path`, redirects not followed. */
async function publicGet(path) {
  return fetch(PUBLIC + path, { redirect: "manual" });
}
async function messageOf(page, id, pattern) {
  const locator = page.locator(`#${id}`);
  await locator.filter({ hasText: pattern }).waitFor({ timeout: 10_000 }).catch(async () => {
    throw new Error(`#${id} says ${JSON.stringify(await locator.textContent())}, expected ${pattern}`);
  });
  return locator.textContent();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  // The browser also logs each 4xx the test provokes as "Failed to load resource"; those are
  // checked where they happen, so only other errors count here.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(m.text());
  });

  // Nothing of the console or the admin API is on the public listener.
  for (const path of ["/", "/console/console.js", "/admin/status"]) {
    const response = await publicGet(path);
    assert.notEqual(response.status, 200, `the public listener serves ${path}`);
  }

  // --- sign in: a wrong token is refused in words, the right one opens the console ---
  await page.goto(ADMIN + "/");
  await page.fill("#token", "not-the-token");
  await page.click("#sign-in-form button[type=submit]");
  log(await messageOf(page, "sign-in-message", /token is wrong/));
  await page.fill("#token", TOKEN);
  await page.click("#sign-in-form button[type=submit]");
  await page.locator("#app").waitFor({ state: "visible" });
  const cookies = await page.context().cookies();
  assert.deepEqual(cookies, [], "the console sets no cookie");
  await shot(page, "signed-in");
  log("signed in");

  // --- edit a redirect, and the public listener answers 301 to the new target ---
  assert.equal((await publicGet("/iiif/3/old-astronaut/info.json")).status, 404);
  await page.fill("#edit-id", "old-astronaut");
  await page.selectOption("#edit-kind", "moved");
  await page.fill("#edit-target", "astronaut");
  await page.fill("#edit-reason", "renamed in the browser test");
  await page.click("#edit-form button[type=submit]");
  log(await messageOf(page, "edit-message", /Saved: old-astronaut now redirects to astronaut/));
  let answer = await publicGet("/iiif/3/old-astronaut/info.json");
  for (let i = 0; answer.status !== 301 && i < 20; i++) {
    await new Promise((r) => setTimeout(r, 100));
    answer = await publicGet("/iiif/3/old-astronaut/info.json");
  }
  assert.equal(answer.status, 301);
  assert.match(answer.headers.get("location"), /\/iiif\/3\/astronaut\/info\.json$/);
  log(`public listener: 301 to ${answer.headers.get("location")}`);
  await page.locator("#record-history tbody tr").first().waitFor();
  await page.fill("#search-prefix", "old-");
  await page.click("#search-form button[type=submit]");
  await page.locator("#search-results tbody tr", { hasText: "old-astronaut" }).waitFor();
  await shot(page, "redirect-edited");

  // Retarget it: the public answer follows.
  await page.fill("#edit-target", "hubble");
  await page.click("#edit-form button[type=submit]");
  await messageOf(page, "edit-message", /now redirects to hubble/);
  answer = await publicGet("/iiif/3/old-astronaut/info.json");
  for (let i = 0; !answer.headers.get("location")?.includes("/hubble/") && i < 20; i++) {
    await new Promise((r) => setTimeout(r, 100));
    answer = await publicGet("/iiif/3/old-astronaut/info.json");
  }
  assert.match(answer.headers.get("location"), /\/iiif\/3\/hubble\/info\.json$/);
  assert.ok((await page.locator("#record-history tbody tr").count()) >= 2, "the history shows both edits");

  // A refused edit is explained in words (a redirect to itself).
  await page.fill("#edit-target", "old-astronaut");
  await page.click("#edit-form button[type=submit]");
  log(await messageOf(page, "edit-message", /refused/));

  // --- import a CSV: a dry run writes nothing, apply writes it ---
  await page.click("nav button[data-tab=import]");
  const csv = join(ARTIFACTS, "redirects.csv");
  writeFileSync(csv, "old,new,kind,reason\nbatch-moved,astronaut,moved,merged\nbatch-gone,,gone,withdrawn\n");
  await page.setInputFiles("#import-file", csv);
  await page.click("#import-form button[type=submit]");
  log(await messageOf(page, "import-message", /Preview ready/));
  assert.match(await page.textContent("#import-summary"), /Dry run, nothing written\. 2 rows: 2 new/);
  assert.equal(await page.locator("#import-changes tbody tr").count(), 2);
  assert.equal((await publicGet("/iiif/3/batch-moved/info.json")).status, 404, "a dry run writes nothing");
  await shot(page, "import-preview");
  await page.click("#import-apply");
  log(await messageOf(page, "import-message", /Imported: 2 records changed/));
  assert.equal((await publicGet("/iiif/3/batch-moved/info.json")).status, 301);
  assert.equal((await publicGet("/iiif/3/batch-gone/info.json")).status, 410);
  await shot(page, "import-applied");

  // --- purge an image and see what was removed ---
  assert.equal((await publicGet("/iiif/3/odd-1001x777/info.json")).status, 200);
  assert.equal((await publicGet("/iiif/3/odd-1001x777/full/128,/0/default.jpg")).status, 200);
  await page.click("nav button[data-tab=purge]");
  await page.fill("#purge-id", "odd-1001x777");
  await page.click("#purge-form button[type=submit]");
  log(await messageOf(page, "purge-message", /Purged odd-1001x777\. Removed derivatives: \d+ files/));
  await page.click("#purge-form button[type=submit]");
  log(await messageOf(page, "purge-message", /Nothing was cached about odd-1001x777/));
  await shot(page, "purged");

  // --- status ---
  await page.click("nav button[data-tab=status]");
  await messageOf(page, "status-ready", /Ready/);
  assert.ok((await page.locator("#status-backends tbody tr").count()) >= 1);
  await shot(page, "status");

  // --- the viewer, through v3 and v2: every tile 200 with CORS allowed ---
  for (const version of ["3", "2"]) {
    const tiles = [];
    const listener = (response) => {
      const url = response.url();
      if (url.startsWith(PUBLIC) && url.endsWith(".jpg")) tiles.push(response);
    };
    page.on("response", listener);
    await page.click("nav button[data-tab=viewer]");
    await page.fill("#viewer-id", "hubble");
    await page.selectOption("#viewer-version", version);
    await page.click("#viewer-form button[type=submit]");
    await messageOf(page, "viewer-message", /Opened/);
    await page.waitForLoadState("networkidle");
    for (let i = 0; tiles.length < 4 && i < 50; i++) await new Promise((r) => setTimeout(r, 100));
    page.off("response", listener);
    assert.ok(tiles.length >= 4, `v${version}: only ${tiles.length} tiles loaded`);
    for (const tile of tiles) {
      assert.equal(tile.status(), 200, tile.url());
      assert.equal((await tile.allHeaders())["access-control-allow-origin"], "*", tile.url());
    }
    assert.doesNotMatch(await page.textContent("#viewer-message"), /failed/);
    await shot(page, `viewer-v${version}`);
    log(`viewer v${version}: ${tiles.length} tiles, every one 200 with CORS`);
  }

  assert.deepEqual(pageErrors, [], "no script errors in the page");
  log("all checks passed");
} finally {
  await browser.close();
}
