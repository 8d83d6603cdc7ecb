import { html } from './api.js';
export function Connections() { return html`<section><h1>Connections</h1><p>Coming soon.</p></section>`; }
