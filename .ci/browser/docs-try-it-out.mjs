// Opens the Swagger UI in headless Chromium, authorizes with an API key, runs "Try it out"
// on POST /run/{process} against the demo data and checks the 202 and the job id on the
// page. Saves a screenshot. Usage: node docs-try-it-out.mjs BASE_URL API_KEY SCREENSHOT
import { chromium } from "playwright-core";

const [base, apiKey, screenshot] = process.argv.slice(2);
if (!base || !apiKey || !screenshot) {
  console.error("usage: node docs-try-it-out.mjs BASE_URL API_KEY SCREENSHOT");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // The machine has no outside network: keep Chromium from trying to reach it.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 2000 } });
const failures = [];
page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => failures.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
page.setDefaultTimeout(20_000);

try {
  await page.goto(`${base}/docs/`, { waitUntil: "networkidle" });
  await page.locator(".information-container .title").waitFor();

  // Authorize: the api_key scheme, with the key.
  await page.locator("button.authorize").first().click();
  const scheme = page.locator(".auth-container").filter({ hasText: "api_key" });
  await scheme.locator("input").fill(apiKey);
  await scheme.locator("button.authorize").click();
  await scheme.getByText("Authorized", { exact: true }).waitFor();
  await page.locator(".dialog-ux button.close-modal").click();

  // POST /run/{process}: Try it out with the demo's Invoices process.
  const op = page.locator(".opblock-post").filter({
    has: page.locator('.opblock-summary-path[data-path="/run/{process}"]'),
  });
  await op.locator(".opblock-summary").click();
  await op.locator("button.try-out__btn").click();
  await op.locator('tr[data-param-name="process"] input').fill("Invoices");
  await op.locator("textarea.body-param__text").fill('{"in_Vendor": "ACME", "in_Amount": 12.5}');
  await op.locator("button.execute").click();

  const row = op.locator(".live-responses-table tbody tr.response").first();
  await row.waitFor();
  const status = (await row.locator(".response-col_status").innerText()).trim();
  const body = await row.locator(".response-col_description pre").first().innerText();
  await page.screenshot({ path: screenshot, fullPage: true });
  if (status !== "202") throw new Error(`expected 202 on the page, saw ${status}: ${body}`);
  const job = JSON.parse(body);
  if (!/^[0-9a-f-]{36}$/.test(job.id ?? "")) throw new Error(`no job id on the page: ${body}`);
  if (job.process !== "Invoices") throw new Error(`the job is not an Invoices job: ${body}`);

  // The page's job is the ledger's job.
  const res = await fetch(`${base}/jobs/${job.id}`, { headers: { Authorization: `Bearer ${apiKey}` } });
  if (res.status !== 200) throw new Error(`GET /jobs/${job.id} answered ${res.status}`);
  const stored = await res.json();
  if (stored.input?.in_Vendor !== "ACME") throw new Error(`stored job differs: ${JSON.stringify(stored)}`);
  if (failures.length) throw new Error(failures.join("\n"));
  console.log(`Swagger UI: Try it out on POST /run/Invoices answered 202 with job ${job.id} (state ${stored.state}); screenshot ${screenshot}`);
} catch (e) {
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  console.error(`browser test failed: ${e.message}\n(screenshot: ${screenshot})`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
