/* chart.js: placeholder */
