import { html } from './api.js';
export function Console() { return html`<section><h1>Console</h1><p>Coming soon.</p></section>`; }
