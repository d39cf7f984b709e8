// Browser I/O of the scribble canvas: ComfyUI's /view URLs, decoding images, encoding and uploading drawings.
// Helpers only: importing this module registers nothing.
import { api } from "../../scripts/api.js";
import * as S from "./lib/strokes.js";

/** The /view URL of a file in ComfyUI's input (or temp/output) folder, from a drawing reference. */
export function viewURL(ref, type = "input") {
  const { subfolder, filename } = S.parseReference(ref);
  const q = new URLSearchParams({ filename, subfolder, type });
  return api.apiURL(`/view?${q}`);
}

/** Load an image element; rejects with the URL when it cannot be loaded. */
export function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${src}`));
    img.src = src;
  });
}

/** RGBA pixels (Uint8ClampedArray, 4 x w x h) of a loaded image at its natural size. */
export function imagePixels(img) {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height).data;
}

/** A raster as an opaque white-on-black PNG blob. */
export async function encodePNG(raster) {
  const c = document.createElement("canvas");
  c.width = raster.width;
  c.height = raster.height;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(raster.width, raster.height);
  S.toRGBA(raster, true, img.data);
  ctx.putImageData(img, 0, 0);
  return new Promise((res, rej) => c.toBlob((b) => (b ? res(b) : rej(new Error("the browser could not encode the PNG"))), "image/png"));
}

/**
 * Upload a raster to ComfyUI's input folder under `ref`. With `overwrite` false the server keeps a file of
 * that name whose bytes are the same (writing nothing, so a run reading it meanwhile is undisturbed) and
 * stores other bytes under another name, which is reported as an error.
 * @throws {Error} saying what the server answered, or that it stored the file under another name.
 */
export async function uploadDrawing(raster, ref, overwrite = true) {
  const { subfolder, filename } = S.parseReference(ref);
  const blob = await encodePNG(raster);
  const body = new FormData();
  body.append("image", new File([blob], filename, { type: "image/png" }));
  body.append("type", "input");
  body.append("subfolder", subfolder);
  body.append("overwrite", overwrite ? "true" : "false");
  const resp = await api.fetchApi("/upload/image", { method: "POST", body });
  if (resp.status !== 200) {
    const text = (await resp.text().catch(() => "")).slice(0, 200);
    throw new Error(`the server answered ${resp.status} ${resp.statusText}${text ? `: ${text}` : ""}`);
  }
  const answer = await resp.json();
  const got = answer.subfolder ? `${answer.subfolder}/${answer.name}` : answer.name;
  if (got !== ref) throw new Error(`the server stored it as ${JSON.stringify(got)} instead of ${JSON.stringify(ref)}`);
}
