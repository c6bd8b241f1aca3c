// Drives the operator console in headless Chromium: signs in with an API key (keyboard
// only), starts the demo's Invoices process from the Start page, watches its job become
// successful, replays it, and sees the replay (linked to the first job) end the same way.
// Saves a screenshot. Usage: node console.mjs BASE_URL API_KEY SCREENSHOT
import { chromium } from "playwright-core";

const [base, apiKey, screenshot] = process.argv.slice(2);
if (!base || !apiKey || !screenshot) {
  console.error("usage: node console.mjs BASE_URL API_KEY SCREENSHOT");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
const failures = [];
page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
page.on("console", (m) => m.type() === "error" && failures.push(`console error: ${m.text()}`));
page.setDefaultTimeout(20_000);

const jobState = async () => (await page.locator("dl.facts dd .state").first().innerText()).trim();
const waitForState = async (want) => {
  for (let i = 0; i < 100; i++) {
    if ((await jobState()) === want) return;
    await page.waitForTimeout(200);
  }
  throw new Error(`the job did not become ${want} (it is ${await jobState()})`);
};

try {
  await page.goto(`${base}/console`, { waitUntil: "networkidle" });
  // Sign in with the keyboard only: the field has focus, Enter submits.
  await page.locator("#token").waitFor();
  if (!(await page.evaluate(() => document.activeElement?.id === "token")))
    throw new Error("the key field does not have focus");
  await page.keyboard.type(apiKey);
  await page.keyboard.press("Enter");
  await page.locator("nav#nav").waitFor({ state: "visible" });
  if (await page.evaluate(() => location.href.includes("ugw_")))
    throw new Error("the key is in the address");
  if (!(await page.evaluate(() => sessionStorage.getItem("ugw-console-token")?.startsWith("ugw_"))))
    throw new Error("the key is not kept in sessionStorage");

  // Start Invoices with its example.
  await page.getByRole("link", { name: "Start" }).click();
  await page.locator("#s-target").selectOption("/run/Invoices");
  await page.getByRole("button", { name: "Start" }).click();
  await page.locator("dl.facts").waitFor();
  const first = page.url().split("#/jobs/")[1];
  if (!/^[0-9a-f-]{36}$/.test(first || "")) throw new Error(`not on a job page: ${page.url()}`);
  await waitForState("successful");
  const output = await page.locator("h3:text('Output') + pre").innerText();
  if (!output.includes("in_Vendor")) throw new Error(`no output shown: ${output}`);

  // Replay it: the replay's page links back to the first job and ends the same way.
  await page.getByRole("button", { name: "Replay" }).click();
  await page.waitForURL((u) => u.hash.startsWith("#/jobs/") && !u.hash.endsWith(first));
  const second = page.url().split("#/jobs/")[1];
  await page.locator(`dl.facts a[href="#/jobs/${first}"]`).waitFor();
  await waitForState("successful");

  // Both are in the live list, and the list shows the replay as such.
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.locator(`a[href="#/jobs/${second}"]`).waitFor();
  await page.locator(`a[href="#/jobs/${first}"]`).waitFor();
  const replayRow = page.locator("tr", { has: page.locator(`a[href="#/jobs/${second}"]`) });
  if (!(await replayRow.innerText()).includes("replay")) throw new Error("the replay is not shown as one");

  // The admin views render (the key has admin).
  await page.getByRole("link", { name: "Connections" }).click();
  await page.locator("table[aria-label='Connections'] td", { hasText: "simulator" }).first().waitFor();
  await page.locator("table[aria-label='Traffic governor']").waitFor();
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.locator(`a[href="#/jobs/${second}"]`).waitFor();
  await page.screenshot({ path: screenshot, fullPage: false });
  if (failures.length) throw new Error(failures.join("\n"));
  console.log(`console: signed in, started job ${first}, replayed it as ${second}, both successful; screenshot ${screenshot}`);
} catch (e) {
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  console.error(`console test failed: ${e.message}\n(screenshot: ${screenshot})`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
