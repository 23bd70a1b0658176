// Drives one JupyterLab notebook with the ciao kernel in headless Chromium
// and prints what it saw as one JSON object on stdout; the assertions live
// in tests/python/test_browser.py.
//
// Usage: node lab.mjs SETTINGS.json
//   {url, token, notebook, screenshots, userDataDir, chromium, timeoutMs}
// The notebook (made through the contents API with the ciao kernelspec in
// its metadata) holds: cell 0, a TFJob; cell 1, a long job to interrupt;
// cell 2, empty (completion and inspection are typed there).

import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const timeout = settings.timeoutMs ?? 90000;
mkdirSync(settings.screenshots, { recursive: true });

const seen = { steps: [] };
const step = (name) => {
  seen.steps.push({ name, at: Date.now() });
  process.stderr.write(`lab.mjs: ${name}\n`);
};

const context = await chromium.launchPersistentContext(settings.userDataDir, {
  executablePath: settings.chromium ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1400, height: 1000 },
});
context.setDefaultTimeout(timeout);

let page;
const shot = (name) => page.screenshot({ path: join(settings.screenshots, `${name}.png`), fullPage: false });

try {
  page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e}\n`));
  await page.goto(`${settings.url}/lab/tree/${settings.notebook}?token=${settings.token}`);
  step('opened');

  const panel = page.locator('.jp-NotebookPanel').first();
  // The kernel named in the notebook's metadata is started and idle.
  const kernelName = panel.locator('.jp-NotebookPanel-toolbar .jp-KernelName, .jp-NotebookPanel-toolbar [data-jp-item-name="kernelName"]').first();
  await kernelName.filter({ hasNotText: 'No Kernel' }).waitFor();
  await panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').waitFor();
  seen.kernelName = (await kernelName.innerText()).trim();
  step('kernel idle');

  const cells = panel.locator('.jp-Notebook .jp-Cell');
  // Selects cell i (a click on its prompt) and presses the toolbar's run button.
  const runCell = async (i) => {
    await cells.nth(i).locator('.jp-InputPrompt').click();
    await panel.locator(`.jp-Notebook .jp-Cell:nth-child(${i + 1}).jp-mod-selected`).waitFor();
    await panel.locator('.jp-NotebookPanel-toolbar [data-command="notebook:run-cell-and-select-next"]').click();
  };

  // 1. The TFJob: a push display, the live table, prefixed logs.
  await runCell(0);
  const out0 = cells.nth(0).locator('.jp-OutputArea');
  await out0.locator('.ciao-job').waitFor();
  seen.tableStates = [await out0.locator('.ciao-job').getAttribute('data-state')];
  await out0.locator('.ciao-job[data-state="Succeeded"]').waitFor();
  await panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').waitFor();
  seen.tableStates.push(await out0.locator('.ciao-job').getAttribute('data-state'));
  seen.jobTables = await out0.locator('.ciao-job').count();
  seen.table = await out0.locator('.ciao-job').innerText();
  seen.replicaPhases = await out0.locator('.ciao-job tr[data-replica]').evaluateAll(
    (rows) => rows.map((r) => [r.dataset.replica, r.dataset.phase]));
  seen.pushDisplays = await out0.locator('.ciao-push').count();
  seen.push = await out0.locator('.ciao-push').first().innerText();
  seen.pushState = await out0.locator('.ciao-push').first().getAttribute('data-state');
  seen.outputText = await out0.innerText();
  seen.colouredPrefixes = await out0.locator('.jp-RenderedText pre span[class*="ansi-"]').evaluateAll(
    (spans) => spans.map((s) => [s.className, s.textContent]).filter(([, t]) => /^\[[a-z]+-\d+\]$/.test(t)));
  await out0.scrollIntoViewIfNeeded();
  await shot('tfjob-succeeded');
  step('tfjob done');

  // 2. Tab after `%frame` offers `%framework=`.
  const editor2 = cells.nth(2).locator('.jp-InputArea-editor .cm-content');
  await editor2.click();
  await cells.nth(2).locator('.jp-InputArea-editor.jp-mod-focused, .jp-InputArea-editor .cm-focused').first().waitFor();
  await page.keyboard.insertText('%frame');
  await page.keyboard.press('Tab');
  const completer = page.locator('.jp-Completer');
  await completer.locator('.jp-Completer-item').first().waitFor();
  seen.completions = await completer.locator('.jp-Completer-item .jp-Completer-match').allInnerTexts();
  await shot('completion');
  await page.keyboard.press('Escape');
  await completer.waitFor({ state: 'hidden' });
  step('completion');

  // 3. Shift-Tab shows the magic's documentation.
  await page.keyboard.press('Control+a');
  await page.keyboard.insertText('%framework=tensorflow');
  await page.keyboard.press('Home');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Shift+Tab');
  const tooltip = page.locator('.jp-Tooltip');
  await tooltip.filter({ hasText: '%framework' }).waitFor();
  seen.tooltip = await tooltip.innerText();
  await shot('inspection');
  await page.keyboard.press('Escape');
  step('inspection');

  // 4. The interrupt button stops a running job.
  await runCell(1);
  const out1 = cells.nth(1).locator('.jp-OutputArea');
  await out1.getByText('[worker-0] started', { exact: false }).waitFor();
  await panel.locator('.jp-Notebook-ExecutionIndicator[data-status="busy"]').waitFor();
  const interruptedAt = Date.now();
  await panel.locator('.jp-NotebookPanel-toolbar [data-command="notebook:interrupt-kernel"]').click();
  await panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').waitFor();
  seen.interruptMs = Date.now() - interruptedAt;
  seen.interruptedTableState = await out1.locator('.ciao-job').getAttribute('data-state');
  seen.interruptedText = await out1.innerText();
  seen.interruptedPhases = await out1.locator('.ciao-job tr[data-replica]').evaluateAll(
    (rows) => rows.map((r) => [r.dataset.replica, r.dataset.phase]));
  await out1.scrollIntoViewIfNeeded();
  await shot('interrupted');
  step('interrupt');

  seen.ok = true;
} catch (e) {
  seen.ok = false;
  seen.error = String(e?.stack ?? e);
  if (page) {
    await shot('failure').catch(() => {});
  }
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(seen) + '\n');
