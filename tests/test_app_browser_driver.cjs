// Headless-Chromium check of the cameo-app page (driven by tests/test_app_browser.py; needs playwright-core).
// Usage: CHROMIUM=/usr/bin/chromium node test_app_browser_driver.cjs URL SCREENSHOT.png USER_DATA_DIR
// Loads the page, clicks the first bundled example, presses Run, waits for the result, saves a screenshot and
// prints one JSON object: status text, counts of result elements, viewer link, every non-local request made.
const { chromium } = require("playwright-core");

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

async function main() {
  const [url, screenshot, userDataDir] = process.argv.slice(2);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 900 },
  });
  const external = [];
  const note = (u) => {
    const parsed = new URL(u);
    if (["http:", "https:", "ws:", "wss:"].includes(parsed.protocol) && !LOCAL_HOSTS.has(parsed.hostname)) {
      external.push(u);
    }
  };
  context.on("request", (request) => note(request.url()));
  const page = context.pages()[0] || (await context.newPage());
  page.on("websocket", (ws) => note(ws.url()));
  const result = { external };
  try {
    await page.goto(url, { waitUntil: "load" });
    const example = page.getByText(process.env.EXAMPLE_NAME || "object_00", { exact: true }).first();
    await example.click();
    await page.getByText("scene.json", { exact: false }).first().waitFor({ timeout: 30000 });
    await page.locator("#run").click();
    await page.waitForFunction(() => {
      const status = document.querySelector("#status textarea");
      const toast = document.querySelector(".toast-body");
      return (status && status.value.startsWith("Done")) || toast;
    }, null, { timeout: 240000, polling: 500 });
    await page.waitForTimeout(1500); // let the gallery, video and 3D view render before the screenshot
    result.status = await page.locator("#status textarea").inputValue();
    result.toast = await page.locator(".toast-body").allInnerTexts();
    result.gallery_images = await page.locator("#gallery img").count();
    result.splat_canvases = await page.locator("#splat canvas").count();
    result.viewer_link = await page.locator("#viewer-link a").first().getAttribute("href").catch(() => null);
    await page.screenshot({ path: screenshot, fullPage: true });
  } catch (err) {
    result.error = String(err);
    await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  } finally {
    await context.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((err) => {
  process.stderr.write(`driver failed: ${err}\n`);
  process.exit(1);
});
