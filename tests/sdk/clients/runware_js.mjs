// @runware/sdk-js 1.3.2, unmodified, against ltxserve: the scenarios of the Python clients.
// Usage: node runware_js.mjs CONFIG_JSON (key in RUNWARE_API_KEY); prints one JSON document.
import { readFileSync, writeFileSync } from "node:fs";
import { Runware } from "@runware/sdk-js";

const config = JSON.parse(process.argv[2]);
const base = config.request;
const runware = new Runware({ apiKey: process.env.RUNWARE_API_KEY, url: config.wsUrl });
const out = {};

async function download(items, prefix) {
  for (const [i, item] of items.entries()) {
    const response = await fetch(item.videoURL);
    const file = `${config.outDir}/${prefix}-${i}.mp4`;
    writeFileSync(file, Buffer.from(await response.arrayBuffer()));
    item.file = file;
  }
  return items;
}

const plain = (items) => items.map((item) => ({ ...item, additionalResponse: undefined }));

try {
  await runware.ensureConnection();
  // (a) text-to-video: the SDK acks, then polls getResponse every 2 s until the result is in
  out.t2v = await download(plain(await runware.videoInference({ ...base, seed: 11 })), "t2v");
  // (b) image-to-video: the JS SDK passes image inputs through (a data URI here)
  const png = readFileSync(config.image).toString("base64");
  out.i2v = await download(
    plain(
      await runware.videoInference({
        ...base,
        inputs: { frameImages: [{ image: `data:image/png;base64,${png}`, frame: "first" }] },
      }),
    ),
    "i2v",
  );
  // (c) two results with their cost
  out.multi = await download(
    plain(await runware.videoInference({ ...base, seed: 100, numberResults: 2, includeCost: true })),
    "multi",
  );
  // (d) a validation error surfaces as the SDK's rejection, carrying our error item
  try {
    await runware.videoInference({ ...base, width: 130 });
    out.error = null;
  } catch (error) {
    out.error = error?.error ?? error;
  }
} catch (error) {
  out.fatal = String(error?.message ?? JSON.stringify(error));
} finally {
  await runware.disconnect();
}
process.stdout.write(JSON.stringify(out));
process.exit(0);
