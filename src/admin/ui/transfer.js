import { html } from './api.js';
export function Transfer() { return html`<section><h1>Transfer</h1><p>Coming soon.</p></section>`; }
