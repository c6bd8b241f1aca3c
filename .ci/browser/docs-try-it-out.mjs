// Opens the Swagger UI in headless Chromium, authorizes with an API key, runs "Try it out"
// on the demo's own POST /run/Invoices operation with its prefilled example, unedited, and
// checks the 202 (or 200), the job id on the page, the ledger's copy, and that the 422
// answer's example shows a code /run really answers 422 with; then the same Try it out on
// the demo's queue, POST /queues/InvoicesToBook. Saves a screenshot. Usage: node docs-try-it-out.mjs BASE_URL API_KEY SCREENSHOT
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
  const scheme = page
    .locator(".auth-container")
    .filter({ has: page.locator("h4 code", { hasText: /^api_key$/ }) });
  await scheme.locator("input").fill(apiKey);
  await scheme.locator("button.authorize").click();
  await scheme.getByText("Authorized", { exact: true }).waitFor();
  await page.locator(".dialog-ux button.close-modal").click();

  // No top bar inviting to explore other documents.
  if (await page.locator(".topbar").count()) throw new Error("the Swagger top bar is shown");

  // POST /run/Invoices: the demo's process is its own operation. Try it out with the
  // prefilled example, unedited.
  const doc = await (await fetch(`${base}/openapi.json`)).json();
  const example = doc.paths["/run/Invoices"]?.post?.requestBody?.content?.["application/json"]?.example;
  if (!example) throw new Error("the document has no POST /run/Invoices with an example");
  const op = page.locator(".opblock-post").filter({
    has: page.locator('.opblock-summary-path[data-path="/run/Invoices"]'),
  });
  await op.locator(".opblock-summary").click();
  await op.locator("button.try-out__btn").click();
  const prefilled = JSON.parse(await op.locator("textarea.body-param__text").inputValue());
  if (JSON.stringify(prefilled) !== JSON.stringify(example))
    throw new Error(`the prefilled body is not the example: ${JSON.stringify(prefilled)}`);
  await op.locator("button.execute").click();

  const row = op.locator(".live-responses-table tbody tr.response").first();
  await row.waitFor();
  const status = (await row.locator(".response-col_status").innerText()).trim();
  const body = await row.locator(".response-col_description pre").first().innerText();
  await page.screenshot({ path: screenshot, fullPage: true });
  if (status !== "202" && status !== "200") throw new Error(`expected 202 or 200 on the page, saw ${status}: ${body}`);
  const job = JSON.parse(body);
  if (!/^[0-9a-f-]{36}$/.test(job.id ?? "")) throw new Error(`no job id on the page: ${body}`);
  if (job.process !== "Invoices") throw new Error(`the job is not an Invoices job: ${body}`);

  // The page's job is the ledger's job, with the example's arguments.
  const res = await fetch(`${base}/jobs/${job.id}`, { headers: { Authorization: `Bearer ${apiKey}` } });
  if (res.status !== 200) throw new Error(`GET /jobs/${job.id} answered ${res.status}`);
  const stored = await res.json();
  for (const [name, value] of Object.entries(example)) {
    if (JSON.stringify(stored.input?.[name]) !== JSON.stringify(value))
      throw new Error(`stored job differs in ${name}: ${JSON.stringify(stored)}`);
  }

  // An error answer's example carries a code that status really returns.
  const documented = op.locator('tr.response[data-code="422"]');
  await documented.waitFor();
  const shown = await documented.innerText();
  if (!shown.includes("invalid_arguments"))
    throw new Error(`the 422 example does not show invalid_arguments: ${shown}`);

  // POST /queues/InvoicesToBook: the demo's queue mapping is its own operation too, typed
  // with the queue's schema. Its prefilled example, unedited, adds an item.
  const itemExample = doc.paths["/queues/InvoicesToBook"]?.post?.requestBody?.content?.["application/json"]?.example;
  if (!itemExample || !("InvoiceNumber" in itemExample))
    throw new Error("the document has no typed POST /queues/InvoicesToBook with an example");
  const queueOp = page.locator(".opblock-post").filter({
    has: page.locator('.opblock-summary-path[data-path="/queues/InvoicesToBook"]'),
  });
  await queueOp.locator(".opblock-summary").click();
  await queueOp.locator("button.try-out__btn").click();
  await queueOp.locator("button.execute").click();
  const itemRow = queueOp.locator(".live-responses-table tbody tr.response").first();
  await itemRow.waitFor();
  const itemStatus = (await itemRow.locator(".response-col_status").innerText()).trim();
  const itemBody = await itemRow.locator(".response-col_description pre").first().innerText();
  if (itemStatus !== "202" && itemStatus !== "200")
    throw new Error(`expected 202 or 200 from POST /queues/InvoicesToBook, saw ${itemStatus}: ${itemBody}`);
  const item = JSON.parse(itemBody);
  if (item.kind !== "queue_item") throw new Error(`not a queue item: ${itemBody}`);
  await page.screenshot({ path: screenshot, fullPage: true });

  if (failures.length) throw new Error(failures.join("\n"));
  console.log(`Swagger UI: Try it out on POST /queues/InvoicesToBook answered ${itemStatus} with item ${item.id}`);
  console.log(`Swagger UI: Try it out on POST /run/Invoices with its example answered ${status} with job ${job.id} (state ${stored.state}); screenshot ${screenshot}`);
} catch (e) {
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  console.error(`browser test failed: ${e.message}\n(screenshot: ${screenshot})`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
