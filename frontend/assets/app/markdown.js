// Markdown → sanitized DOM. Two layers: marked renders raw HTML in a message as escaped text (so
// `<img onerror=…>` is shown, not parsed), and DOMPurify then keeps only the tags and attributes a chat
// message needs, with http(s)/mailto links only. The result is a DocumentFragment; no string of HTML
// produced here is ever assigned to innerHTML.
import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";
import { h } from "./dom.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const marked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    // Raw HTML (block or inline) is shown as the text the person typed.
    html({ text }) {
      return escapeHtml(text);
    },
    // Images would load third-party URLs (tracking, and the CSP refuses them): show a link instead.
    image({ href, text }) {
      const label = escapeHtml(text || href);
      return /^https?:/i.test(href) ? `<a href="${escapeHtml(href)}">🖼 ${label}</a>` : label;
    },
  },
});

const PURIFY = {
  ALLOWED_TAGS: [
    "p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "input",
  ],
  ALLOWED_ATTR: ["href", "title", "start", "align", "class", "type", "checked", "disabled"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
  // Task-list checkboxes only: any other input is dropped, and none is interactive.
  if (node.tagName === "INPUT") {
    if (node.getAttribute("type") !== "checkbox") node.remove();
    else node.setAttribute("disabled", "");
  }
  if (node.hasAttribute("class") && !/^language-[\w+-]+$/.test(node.getAttribute("class"))) {
    node.removeAttribute("class");
  }
});

/** Render a message's Markdown into a sanitized fragment, code blocks with a copy button. */
export function renderMarkdown(text) {
  const fragment = DOMPurify.sanitize(marked.parse(String(text ?? "")), PURIFY);
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const language = /language-([\w+-]+)/.exec(code?.className || "")?.[1];
    const button = h("button.copy", { type: "button", "aria-label": "Copy code" }, "Copy");
    button.addEventListener("click", () => copyText(code ? code.textContent : pre.textContent, button));
    const header = h("div.code-header", {}, h("span.code-lang", {}, language || "code"), button);
    const wrapper = h("div.code-block");
    pre.replaceWith(wrapper);
    wrapper.append(header, pre);
  }
  for (const table of fragment.querySelectorAll("table")) {
    const scroller = h("div.table-scroll", { tabindex: "0", role: "region", "aria-label": "Table" });
    table.replaceWith(scroller);
    scroller.append(table);
  }
  return fragment;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => (button.textContent = "Copy"), 1500);
}
